package console

import (
	"context"
	"fmt"
	"time"
)

// chartMinutes is how far back the overview's chart goes.
const chartMinutes = 60

// Chart geometry, in SVG user units.
const (
	barW   = 5
	chartW = chartMinutes * barW
	chartH = 60
)

// chart is one door's decisions per minute, as SVG bars.
type chart struct {
	Door    string
	Max     int
	Allowed int
	Refused int
	Bars    []bar
	W, H    int
}

// bar is one minute: an allowed part (bottom) and a refused part above it.
type bar struct {
	X              int
	YA, HA, YR, HR int
	Title          string
}

// perMinute counts the last hour's verdict lines per door and minute,
// reading the decision log backwards (within the bounds of
// Source.backward).
func perMinute(ctx context.Context, src Source, now time.Time) ([]chart, error) {
	end := now.Truncate(time.Minute).Add(time.Minute)
	start := end.Add(-chartMinutes * time.Minute)
	type counts struct{ allow, refuse [chartMinutes]int }
	by := map[string]*counts{}
	var e Entry
	_, _, err := src.backward(ctx, "", start, func(line []byte, _ string) bool {
		if ParseLine(line, &e) != nil {
			return true
		}
		if e.Time.Before(start.Add(-time.Second)) {
			return false
		}
		if e.Decision == "" || e.Time.Before(start) || !e.Time.Before(end) {
			return true
		}
		c := by[e.Door]
		if c == nil {
			if len(by) >= 8 {
				return true
			}
			c = &counts{}
			by[e.Door] = c
		}
		i := int(e.Time.Sub(start) / time.Minute)
		if e.Refused() {
			c.refuse[i]++
		} else {
			c.allow[i]++
		}
		return true
	})
	charts := map[string]*chart{}
	for door, c := range by {
		ch := &chart{Door: door, W: chartW, H: chartH}
		for i := range chartMinutes {
			ch.Max = max(ch.Max, c.allow[i]+c.refuse[i])
			ch.Allowed += c.allow[i]
			ch.Refused += c.refuse[i]
		}
		for i := range chartMinutes {
			a, r := c.allow[i], c.refuse[i]
			ha, hr := scale(a, ch.Max), scale(r, ch.Max)
			ch.Bars = append(ch.Bars, bar{X: i * barW, YA: chartH - ha, HA: ha, YR: chartH - ha - hr, HR: hr,
				Title: fmt.Sprintf("%s: %d allowed, %d refused", start.Add(time.Duration(i)*time.Minute).Format("15:04"), a, r)})
		}
		charts[door] = ch
	}
	return sortedDoors(charts), err
}

func scale(n, top int) int {
	if n == 0 || top == 0 {
		return 0
	}
	return max(1, n*chartH/top)
}
