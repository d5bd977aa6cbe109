// Package components registers every pgflo component in Benthos' global
// environment by importing the packages that define them. The doc generator
// and its staleness test both import it, so they always document the same
// set; add a package here when it starts registering components.
package components

import (
	// pg_flo_replicator, pg_flo_worker
	_ "github.com/pgflo/pgflo/inputs"
	// prometheus (metrics exporter)
	_ "github.com/pgflo/pgflo/metrics"
	// pg_flo_jetstream
	_ "github.com/pgflo/pgflo/outputs"
	// pg_flo_decode, pg_flo_rules, pg_flo_route
	_ "github.com/pgflo/pgflo/processors"
)
