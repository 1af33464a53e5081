package maillog

// parseNginx parses nginx mail proxy lines. Written in a later commit.
func parseNginx(msg []byte, ev *Event) bool {
	return false
}
