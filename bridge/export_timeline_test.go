package bridge

// TimelineWrites is how many timeline records the bridge wrote (timeline.go).
func (br *Bridge) TimelineWrites() int { return br.timeline.timelineWrites() }
