package cli

import (
	"strings"
	"testing"
)

// Bad flags of `pgflo dead-letters` fail before any connection is made and
// name the flag.
func TestDeadLettersFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--nats-url", "nats://127.0.0.1:1"}, "--group: invalid group name"},
		{[]string{"replay", "--group", "a>b", "--nats-url", "nats://127.0.0.1:1"}, "--group: invalid group name"},
		{[]string{"list", "--group", "g"}, "--nats-url is required"},
		{[]string{"replay", "--group", "g", "--nats-url", "nats://127.0.0.1:1", "7"}, `unexpected argument "7"`},
		{[]string{"list", "--group", "g", "--nats-url", "nats://127.0.0.1:1", "--nats-tls-ca", "/nonexistent/ca.pem"}, "--nats-tls-ca, --nats-tls-cert, --nats-tls-key: read CA file"},
	} {
		out, err := runApp(t, DeadLettersCommand(), append([]string{"dead-letters"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("dead-letters %v: error %v, want one containing %q (output %q)", c.args, err, c.want, out)
		}
	}
}
