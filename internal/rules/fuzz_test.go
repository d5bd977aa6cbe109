package rules

import (
	"strings"
	"testing"
)

// FuzzLoad: no rules file panics the loader, and each one it rejects gets
// one line that starts with the file's name.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"tables:\n  users:\n    - type: filter\n      column: age\n      parameters: { operator: gt, value: 30 }\n",
		"tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: regex, pattern: '(', replace: x }\n",
		"tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: mask, mask_char: '*' }\n      operations: [INSERT]\n",
		"tables:\n  \"a\\nb\":\n    - type: redact\n",
		"tables: [users]\n",
		"rules:\n  - &a [*a]\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Load(data, "rules.yaml")
		if err == nil {
			return
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "rules.yaml") {
			t.Fatalf("error %q: want one line starting with the file name", msg)
		}
	})
}
