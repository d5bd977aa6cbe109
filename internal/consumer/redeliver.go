package consumer

// Redeliver ends the batch without acknowledging it, as Done with an error
// does (its messages are handed back and the consumer rewound, so they come
// again first), but without the back-off: nothing failed that waiting would
// help. pg_flo_worker uses it once it stored a message the output can never
// apply as a dead letter, to have the batch again without it at once.
func (b *Batch) Redeliver() error {
	c := b.c
	ended := b.end(func() {
		nak(b.Msgs)
		c.mu.Lock()
		c.forceReset = true
		c.retryWait = 0
		c.mu.Unlock()
	})
	if !ended {
		return ErrBatchEnded
	}
	return nil
}
