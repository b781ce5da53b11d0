package alerts

// Quiet is what the offline rule reads of the screen schedules (docs/protocol.md §12,
// #quiet-hours): a Fleet that also implements it keeps quiet hours, raising no
// device_offline or device_behind for a device whose feed is scheduled asleep.
type Quiet interface {
	// Asleep reports whether feed is scheduled asleep now. It is asked once per device
	// per tick, so it must cost no more than a lookup.
	Asleep(feed string) bool
}

// asleep reports whether the Fleet says feed is scheduled asleep now.
func (s *Service) asleep(feed string) bool {
	q, ok := s.fleet.(Quiet)
	return ok && q.Asleep(feed)
}
