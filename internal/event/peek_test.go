package event

import (
	"strings"
	"testing"
)

func TestPeek(t *testing.T) {
	plain := Event{Op: Update, Schema: "public", Table: "users", LSN: 0x16B3748, CommitLSN: 0x16B37A0,
		New: Row{text("id", "1")}, Old: Row{text("id", "1")}}
	escaped := Event{Op: Delete, Schema: `we"ird\s`, Table: "t<1>\u2028é", LSN: 0xA_0000_0001,
		Old: Row{text("id", "1")}}

	cases := []struct {
		name string
		data string
		want Head
	}{
		{
			name: "our encoding",
			data: string(plain.AppendJSON(nil)),
			want: Head{Op: Update, Schema: "public", Table: "users", LSN: "0/16B3748"},
		},
		{
			name: "our encoding with escapes",
			data: string(escaped.AppendJSON(nil)),
			want: Head{Op: Delete, Schema: `we"ird\s`, Table: "t<1>\u2028é", LSN: "A/1"},
		},
		{
			name: "every op",
			data: string((&Event{Op: Truncate, Schema: "s", Table: "t"}).AppendJSON(nil)),
			want: Head{Op: Truncate, Schema: "s", Table: "t", LSN: "0/0"},
		},
		{
			name: "fields in another order",
			data: `{"lsn":"0/16B3748","table":"users","schema":"public","op":"UPDATE","v":1,"columns":[],"new":null,"old":null}`,
			want: Head{Op: Update, Schema: "public", Table: "users", LSN: "0/16B3748"},
		},
		{
			name: "whitespace",
			data: "{ \"v\": 1, \"op\": \"INSERT\", \"schema\": \"public\", \"table\": \"users\", \"lsn\": \"0/1\" }",
			want: Head{Op: Insert, Schema: "public", Table: "users", LSN: "0/1"},
		},
		{
			name: "unnecessary escapes",
			data: `{"v":1,"op":"\u0049NSERT","schema":"p\u0075blic","table":"a\/b","lsn":"0/1"}`,
			want: Head{Op: Insert, Schema: "public", Table: "a/b", LSN: "0/1"},
		},
		{
			name: "escapes out of order",
			data: `{"table":"t\"\\\u00e9","op":"DELETE","lsn":"0/2","v":1,"schema":"s\n"}`,
			want: Head{Op: Delete, Schema: "s\n", Table: "t\"\\é", LSN: "0/2"},
		},
		{
			name: "members in our order with one missing",
			data: `{"v":1,"op":"INSERT","table":"t","schema":"s","lsn":"0/3"}`,
			want: Head{Op: Insert, Schema: "s", Table: "t", LSN: "0/3"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Peek([]byte(tc.data))
			if err != nil {
				t.Fatalf("Peek(%s): %v", tc.data, err)
			}
			if got != tc.want {
				t.Errorf("Peek(%s) = %+v, want %+v", tc.data, got, tc.want)
			}
		})
	}
}

// TestPeekAgreesWithDecode checks Peek against the full decoder for every
// sample event.
func TestPeekAgreesWithDecode(t *testing.T) {
	for _, tc := range sampleEvents() {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.ev.AppendJSON(nil)
			head, err := Peek(data)
			if err != nil {
				t.Fatalf("Peek: %v", err)
			}
			ev, err := decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := Head{Op: ev.Op, Schema: ev.Schema, Table: ev.Table, LSN: ev.LSN.String()}
			if head != want {
				t.Errorf("Peek = %+v, Decode says %+v", head, want)
			}
		})
	}
}

func TestPeekRejects(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		wantErr string
	}{
		{"empty", ``, "decode change event"},
		{"garbage", `garbage`, "decode change event"},
		{"binary", "\x00\x01\x02", "decode change event"},
		{"array", `[1,2]`, "decode change event"},
		{"string", `"INSERT"`, "decode change event"},
		{"truncated prefix", `{"v":1,"op":"INSERT","schema":"s","ta`, "decode change event"},
		{"unterminated string", `{"v":1,"op":"INSERT","schema":"s\`, "decode change event"},
		{"version 2", `{"v":2,"op":"INSERT","schema":"s","table":"t","lsn":"0/1"}`, "unsupported version v=2"},
		{"version 10", `{"v":10,"op":"INSERT","schema":"s","table":"t","lsn":"0/1"}`, "unsupported version v=10"},
		{"no version", `{"op":"INSERT","schema":"s","table":"t","lsn":"0/1"}`, "unsupported version v=0"},
		{"unknown op in our layout", `{"v":1,"op":"MERGE","schema":"s","table":"t","lsn":"0/1"}`, `unknown op "MERGE"`},
		{"unknown op", `{"op":"upsert","v":1}`, `unknown op "upsert"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			head, err := Peek([]byte(tc.data))
			if err == nil {
				t.Fatalf("Peek(%q) = %+v, want an error containing %q", tc.data, head, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Peek(%q) error = %q, want it to contain %q", tc.data, err, tc.wantErr)
			}
		})
	}
}

func BenchmarkPeek(b *testing.B) {
	data := sampleEvents()[0].ev.AppendJSON(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Peek(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := sampleEvents()[2].ev
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}
