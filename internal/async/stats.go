package async

import "sync/atomic"

// Stats are the engine's counters since start.
type Stats struct {
	Accepted, Runs, Succeeded, FunctionErrors, Retries, SystemRetries atomic.Int64
	Duplicates, AgeExpired, RetriesExhausted, Dropped, Malformed      atomic.Int64
	DestinationDeliveries, DestinationFailures                        atomic.Int64
	MappingBatches, MappingRecordFailures                             atomic.Int64
	DeadLetterDeliveries, DeadLetterFailures, FunctionGone            atomic.Int64
}

// StatsSnapshot is what the metrics route returns.
type StatsSnapshot struct {
	Accepted              int64 `json:"Accepted"`
	Runs                  int64 `json:"Runs"`
	Succeeded             int64 `json:"Succeeded"`
	FunctionErrors        int64 `json:"FunctionErrors"`
	Retries               int64 `json:"Retries"`
	SystemRetries         int64 `json:"SystemRetries"`
	Duplicates            int64 `json:"Duplicates"`
	AgeExpired            int64 `json:"AgeExpired"`
	RetriesExhausted      int64 `json:"RetriesExhausted"`
	Dropped               int64 `json:"Dropped"`
	Malformed             int64 `json:"Malformed"`
	DestinationDeliveries int64 `json:"DestinationDeliveries"`
	DestinationFailures   int64 `json:"DestinationFailures"`
	MappingBatches        int64 `json:"MappingBatches"`
	MappingRecordFailures int64 `json:"MappingRecordFailures"`
	DeadLetterDeliveries  int64 `json:"DeadLetterDeliveries"`
	DeadLetterFailures    int64 `json:"DeadLetterFailures"`
	// FunctionGone counts events whose function (or alias) was deleted
	// before they ran; they are treated as finally failed, never retried.
	FunctionGone int64  `json:"FunctionGone"`
	QueueDepth   uint64 `json:"QueueDepth"`
	// OldestEventAgeSeconds is the age of the oldest queued event (including
	// retries waiting for their delay), 0 when the queue is empty.
	OldestEventAgeSeconds float64 `json:"OldestEventAgeSeconds"`
}

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		Accepted: s.Accepted.Load(), Runs: s.Runs.Load(), Succeeded: s.Succeeded.Load(),
		FunctionErrors: s.FunctionErrors.Load(), Retries: s.Retries.Load(), SystemRetries: s.SystemRetries.Load(),
		Duplicates: s.Duplicates.Load(), AgeExpired: s.AgeExpired.Load(), RetriesExhausted: s.RetriesExhausted.Load(),
		Dropped: s.Dropped.Load(), Malformed: s.Malformed.Load(),
		DestinationDeliveries: s.DestinationDeliveries.Load(), DestinationFailures: s.DestinationFailures.Load(),
		MappingBatches: s.MappingBatches.Load(), MappingRecordFailures: s.MappingRecordFailures.Load(),
		DeadLetterDeliveries: s.DeadLetterDeliveries.Load(), DeadLetterFailures: s.DeadLetterFailures.Load(),
		FunctionGone: s.FunctionGone.Load(),
	}
}
