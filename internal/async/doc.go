// Package async owns Kiln's durable event queue: the embedded (or external)
// NATS JetStream server, the work-queue stream that holds accepted
// InvocationType=Event invokes, the pollers that lease and run them through
// the synchronous invoke path, Lambda's retry and event-age rules, the
// on-success/on-failure destinations and the dead-letter queue (which gets
// the original event, not a record), and Kiln queues (SQS-shaped
// destinations a user can read with `kiln queue receive`), and the pollers of
// event-source mappings that feed a Kiln queue to a function in Lambda's SQS
// event shape, and Kiln streams (sharded, ordered logs with Kinesis
// semantics, stream.go) with their event-source mappings (per-shard
// pollers, per-key ordered lanes, durable checkpoints, bisect, retries and
// on-failure records, stream_esm.go).
//
// It must never lose an accepted event: Enqueue returns only after JetStream
// has stored the event (and, with SyncAlways, fsynced it), a poller acks an
// event only after its outcome (success, retry republished, or destination
// delivered) is itself durable, and a lease that expires (a poller or the
// server died mid-run) makes the event run again. Duplicates are allowed and
// counted; losses are not. It never answers HTTP for invokes itself — the
// frontend validates and resolves an event before handing it here.
package async
