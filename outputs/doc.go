// Package outputs holds pgflo's Benthos outputs: pg_flo_jetstream, which
// publishes change events into a group's JetStream stream, and
// pg_flo_postgres, which applies them to a target PostgreSQL (its engine is
// internal/apply).
package outputs
