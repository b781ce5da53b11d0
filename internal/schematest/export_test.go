package schematest

// CheckFrame is Frame even while benchmarks run, for the benchmark of its cost.
var CheckFrame = frame
