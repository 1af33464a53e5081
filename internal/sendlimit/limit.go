// Package sendlimit counts the mail each authenticated sender sends, per
// hour and per day, and says when an account is over its limit: the
// containment of a compromised account, which otherwise sends spam until
// the whole server is on blocklists.
//
// The Postfix door asks at every RCPT of an authenticated session
// (sasl_username). A recipient within the limits is counted at once (and
// the message, at the first recipient of each Postfix instance), so a
// message refused later still counts: the error is on the safe side.
// Windows slide: the hour in one-minute steps, the day in one-hour steps.
//
// It is pure: time is an argument, no I/O, no goroutine, no persistence
// (counts start again at zero when mailgate restarts). A Limiter is safe
// for concurrent use; memory is bounded by Config.MaxAccounts (about 1 KB
// per tracked sender). It is not the verdict: the caller turns an
// Exceeded into DEFER_IF_PERMIT or REJECT and logs it.
package sendlimit

// Limits are one account's limits; 0 means no limit.
type Limits struct {
	MessagesPerHour   int
	MessagesPerDay    int
	RecipientsPerHour int
	RecipientsPerDay  int
}

// Exceeded is Rcpt's answer: the zero value (OK) when the recipient was
// within every limit and counted; otherwise the first limit it would have
// exceeded, with nothing counted.
type Exceeded struct {
	Limit string // "messages_per_hour", "messages_per_day", "recipients_per_hour" or "recipients_per_day"
	Max   int    // the limit
	Used  int    // what was counted in its window before this recipient
}

// OK reports whether the recipient was within the limits.
func (e Exceeded) OK() bool { return e.Limit == "" }
