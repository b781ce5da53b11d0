package main

// The IANA time zone database, built in: screen schedules (package schedule) name zones
// such as Europe/Berlin, and a FROM scratch container has no /usr/share/zoneinfo. The
// system's copy is still preferred where there is one (time.LoadLocation's order).
import _ "time/tzdata"
