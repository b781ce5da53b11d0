package pairing

// Names and User-Agents are checked by broker.CheckName and cleaned by
// broker.CleanText (see broker/names.go), so that the producer keys' names, which
// broker owns, obey the same rules.

// maxUserAgentBytes bounds the User-Agent kept with a device or a pair request: it is
// shown to administrators to tell tablets apart, not kept as evidence.
const maxUserAgentBytes = 256
