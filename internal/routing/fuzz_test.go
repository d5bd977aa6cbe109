package routing

import (
	"strings"
	"testing"
)

// FuzzLoad: no routing file panics the loader, and each one it rejects
// gets one line that starts with the file's name.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"users:\n  source_table: users\n  destination_table: customers\n  column_mappings:\n    - { source: email, destination: mail }\n  operations: [INSERT, UPDATE]\n",
		"users:\n  column_mappings:\n    - { source: a, destination: x }\n    - { source: b, destination: x }\n",
		"\"a\\nb\":\n  destination: x\n",
		"sales.orders:\n  destination_schema: archive\n",
		"- users\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Load(data, "routing.yaml")
		if err == nil {
			return
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "routing.yaml") {
			t.Fatalf("error %q: want one line starting with the file name", msg)
		}
	})
}
