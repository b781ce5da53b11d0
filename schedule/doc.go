// Package schedule owns what a screen schedule is and what it says at an instant
// (docs/protocol.md §6, #schedule-format): a feed's weekly awake hours in an IANA time
// zone, exception dates with hours of their own (or none: asleep all day), and what an
// asleep tablet shows. It parses and bounds the administrator's input and answers
// Awake(t) and Next(t).
//
// It is pure: the standard library only, no I/O, no clock of its own (the caller passes
// the instant) and no kioskfeed package; broker stores schedules, the bridge delivers
// them and evaluates them for the devices list, and the PWA's static/schedule.js
// evaluates the same rules in the tablet (testdata/cases.json holds the cases both
// implementations must agree on).
package schedule
