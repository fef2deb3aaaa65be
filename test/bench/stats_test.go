package bench

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

type dist []time.Duration

func (d dist) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(dist(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func report(b *testing.B, name string, d, base dist) {
	b.Helper()
	p50, p99 := d.pct(0.5), d.pct(0.99)
	b50, b99 := base.pct(0.5), base.pct(0.99)
	fmt.Printf("%-28s p50 %9.1f µs  p99 %9.1f µs | baseline p50 %8.1f µs p99 %8.1f µs | ratio p50 %.2fx\n",
		name, us(p50), us(p99), us(b50), us(b99), float64(p50)/float64(b50))
	b.ReportMetric(us(p50), "p50-µs")
	b.ReportMetric(us(p99), "p99-µs")
	b.ReportMetric(us(b50), "base-p50-µs")
	b.ReportMetric(float64(p50)/float64(b50), "ratio-p50")
}

func (d dist) mean() time.Duration {
	if len(d) == 0 {
		return 0
	}
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(len(d))
}
