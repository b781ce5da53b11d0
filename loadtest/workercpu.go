package loadtest

// The load generator's own CPU over a window: the workers share the machine's cores
// with the server under test, so what they spend per delivery is half of what decides
// a fan-out's latency, and it differs by the peer's protocol (a kioskfeed event, a NATS
// MSG, a Centrifugo push).

import (
	"slices"
	"time"
)

// workersCPU is one CPU window per worker process.
type workersCPU []*CPUWindow

// startWorkersCPU begins a window on every worker.
func (r *run) startWorkersCPU() (workersCPU, error) {
	ws := make(workersCPU, 0, len(r.workers))
	for _, w := range r.workers {
		c, err := StartCPU(w.c.pid())
		if err != nil {
			return nil, err
		}
		ws = append(ws, c)
	}
	return ws, nil
}

// usPer ends the windows and gives the workers' CPU, summed, per one of n deliveries
// in µs (0 when a worker cannot be read).
func (ws workersCPU) usPer(n int) float64 {
	var sum CPUSpan
	for _, c := range ws {
		s, err := c.End()
		if err != nil {
			return 0
		}
		sum.CPU += s.CPU
	}
	return float64(sum.Per(n).Nanoseconds()) / 1000
}

// publishTimes is the median and the longest of the last pace's publishes, in ms.
func (r *run) publishTimes() (p50, maxMs float64) {
	if len(r.paced) == 0 {
		return 0, 0
	}
	d := slices.Clone(r.paced)
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	return ms(d[len(d)/2]), ms(d[len(d)-1])
}
