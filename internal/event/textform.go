package event

// TextFormSettings returns the PostgreSQL session settings under which values
// have the text form events carry: pgoutput and COPY print values with the
// session's settings, and a target parses them with its own. The replicator's
// sessions and pg_flo_postgres's pin them, so neither role nor database
// defaults change a value on its way (timestamps in UTC ISO form, intervals
// in postgres style, bytea as hex, floats exact).
func TextFormSettings() map[string]string {
	return map[string]string{
		"DateStyle":          "ISO, MDY",
		"IntervalStyle":      "postgres",
		"TimeZone":           "UTC",
		"bytea_output":       "hex",
		"extra_float_digits": "3",
	}
}
