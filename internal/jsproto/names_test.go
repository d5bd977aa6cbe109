package jsproto

import (
	"errors"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	if got, want := StreamName("users"), "pgflo_users_stream"; got != want {
		t.Errorf("StreamName = %q, want %q", got, want)
	}
	if got, want := ConsumerName("users"), "pgflo_users_consumer"; got != want {
		t.Errorf("ConsumerName = %q, want %q", got, want)
	}
	if got, want := StateBucket("users"), "pg_flo_state_users"; got != want {
		t.Errorf("StateBucket = %q, want %q", got, want)
	}
	if got, want := GroupSubjects("my-group"), "pgflo.my-group.>"; got != want {
		t.Errorf("GroupSubjects = %q, want %q", got, want)
	}
}

func TestSubject(t *testing.T) {
	tests := []struct {
		schema, table, want string
	}{
		{"public", "users", "pgflo.g.public.users"},
		{"public", "order items", "pgflo.g.public.order_items"},
		{"my.schema", "a*b>c", "pgflo.g.my_schema.a_b_c"},
		{"public", "tab\tle\n", "pgflo.g.public.tab_le_"},
		{"public", "ctl\x01\x7f", "pgflo.g.public.ctl__"},
		{"", "t", "pgflo.g._.t"},
		{"öffentlich", "Übersicht", "pgflo.g.öffentlich.Übersicht"},
		{"public", "bad\xffutf8", "pgflo.g.public.bad_utf8"},
		{"public", "nbsp\u00a0x", "pgflo.g.public.nbsp_x"},
	}
	for _, tt := range tests {
		got := Subject("g", tt.schema, tt.table)
		if got != tt.want {
			t.Errorf("Subject(%q, %q) = %q, want %q", tt.schema, tt.table, got, tt.want)
		}
		if err := ValidateFilterSubject(got); err != nil {
			t.Errorf("Subject(%q, %q) = %q is not a valid subject: %v", tt.schema, tt.table, got, err)
		}
		if !SubjectMatches(GroupSubjects("g"), got) {
			t.Errorf("%q does not match the group's subjects", got)
		}
	}
}

func TestValidateGroup(t *testing.T) {
	for _, ok := range []string{"users", "my-group", "g_1", "Grüße"} {
		if err := ValidateGroup(ok); err != nil {
			t.Errorf("ValidateGroup(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a.b", "a*", "a>", "a/b", `a\b`, "a\tb", "a\x00", "\xff"} {
		err := ValidateGroup(bad)
		if !errors.Is(err, ErrInvalidGroup) {
			t.Errorf("ValidateGroup(%q) = %v, want ErrInvalidGroup", bad, err)
		}
	}
}

func TestValidateSubjects(t *testing.T) {
	for _, ok := range []string{"pgflo.g", "a", "x.y.z"} {
		if err := ValidateSubjectPrefix(ok); err != nil {
			t.Errorf("ValidateSubjectPrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".a", "a.", "a..b", "a.*", "a.>", "a b"} {
		if err := ValidateSubjectPrefix(bad); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ValidateSubjectPrefix(%q) = %v, want ErrInvalidSubject", bad, err)
		}
	}
	for _, ok := range []string{"pgflo.g.>", "pgflo.g.public.*", "a", ">", "*.x"} {
		if err := ValidateFilterSubject(ok); err != nil {
			t.Errorf("ValidateFilterSubject(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.>.b", "a.b*", "a..b", "a b"} {
		if err := ValidateFilterSubject(bad); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ValidateFilterSubject(%q) = %v, want ErrInvalidSubject", bad, err)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"pgflo.g.>", "pgflo.g.public.users", true},
		{"pgflo.g.>", "pgflo.g", false},
		{"pgflo.g", "pgflo.g", true},
		{"pgflo.g", "pgflo.g.public.users", false},
		{"pgflo.*.public.*", "pgflo.g.public.users", true},
		{"pgflo.*.public.*", "pgflo.g.other.users", false},
		{">", "a", true},
		{"a.b", "a", false},
	}
	for _, tt := range tests {
		if got := SubjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}

func TestConnConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		conf    ConnConfig
		wantErr string
	}{
		{"plain", ConnConfig{URL: "nats://x"}, ""},
		{"user", ConnConfig{URL: "nats://x", User: "u", Password: "p"}, ""},
		{"no url", ConnConfig{}, "url"},
		{"user and token", ConnConfig{URL: "nats://x", User: "u", Token: "t"}, "mutually exclusive"},
		{"token and creds", ConnConfig{URL: "nats://x", Token: "t", CredsFile: "f"}, "mutually exclusive"},
		{"password alone", ConnConfig{URL: "nats://x", Password: "p"}, "password"},
		{"nkey", ConnConfig{URL: "nats://x", NkeyFile: "user.nk"}, ""},
		{"creds and nkey", ConnConfig{URL: "nats://x", CredsFile: "f", NkeyFile: "user.nk"}, "creds_file and nkey_file are mutually exclusive"},
		{"user and nkey", ConnConfig{URL: "nats://x", User: "u", Password: "p", NkeyFile: "user.nk"}, "mutually exclusive"},
	}
	for _, tt := range tests {
		err := tt.conf.Validate()
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: Validate() = %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct {
		urls, want string
		creds      bool
	}{
		{"nats://bob:secret@h1:4222, nats://h2:4222", "nats://redacted@h1:4222, nats://h2:4222", true},
		{"nats://h1:4222,tls://s3cr3t-token@h2:4222", "nats://h1:4222,tls://redacted@h2:4222", true},
		{"nats://h1:4222,nats://h2:4222", "nats://h1:4222,nats://h2:4222", false},
		{"nats://bob:se%zzret@h1:4222", "(unparsable url)", true},
	} {
		if got := RedactURL(tt.urls); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.urls, got, tt.want)
		}
		if got := HasURLCredentials(tt.urls); got != tt.creds {
			t.Errorf("HasURLCredentials(%q) = %v, want %v", tt.urls, got, tt.creds)
		}
	}
}

func TestValidateName(t *testing.T) {
	if err := ValidateName("stream", "pgflo_g_stream"); err != nil {
		t.Errorf("ValidateName = %v", err)
	}
	for _, bad := range []string{"", "a.b", "a b", "a/b", "a>"} {
		if err := ValidateName("stream", bad); err == nil || !strings.Contains(err.Error(), "stream name") {
			t.Errorf("ValidateName(%q) = %v, want an error naming the stream", bad, err)
		}
	}
}

// Subject is the subject a change of schema.table is published to:
// "pgflo.<group>.<schema>.<table>", each name sanitized by SanitizeToken.
func Subject(group, schema, table string) string {
	return TableSubject(SubjectPrefix(group), schema, table)
}

func TestPartitionNames(t *testing.T) {
	if got := PartitionSubject(TableSubject("pgflo.g", "public", "users"), 3); got != "pgflo.g.public.users.3" {
		t.Errorf("subject %q", got)
	}
	filter := PartitionFilter(SubjectPrefix("g"), 3)
	if !SubjectMatches(filter, "pgflo.g.public.users.3") || SubjectMatches(filter, "pgflo.g.public.users.2") || SubjectMatches(filter, "pgflo.g.public.users") {
		t.Errorf("filter %q", filter)
	}
	if !SubjectMatches(GroupSubjects("g"), "pgflo.g.public.users.3") {
		t.Error("the stream's subjects do not cover partitioned subjects")
	}
	if got := PartitionConsumerName("g", 3); got != "pgflo_g_consumer_p3" {
		t.Errorf("consumer %q", got)
	}
	for _, tc := range []struct {
		meta map[string]string
		n    int
		ok   bool
	}{
		{nil, 1, true},
		{map[string]string{StreamMetaPartitions: "4"}, 4, true},
		{map[string]string{StreamMetaPartitions: "0"}, 0, false},
		{map[string]string{StreamMetaPartitions: "four"}, 0, false},
	} {
		n, err := StreamPartitions(tc.meta)
		if n != tc.n || (err == nil) != tc.ok {
			t.Errorf("StreamPartitions(%v) = %d, %v", tc.meta, n, err)
		}
	}
}
