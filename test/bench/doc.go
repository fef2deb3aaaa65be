// Package bench holds Kiln's performance benchmarks. Each prints its figures
// next to a baseline measured in the same run (a plain net/http loopback
// round trip, a bare fork+exec of the same bootstrap), because this machine
// is a nested VM where absolute numbers mean little and ratios travel.
//
// Run: go test -run '^$' -bench . -benchtime 3000x ./test/bench/
package bench
