package eventtest

import "testing"

func TestObject(t *testing.T) {
	obj, err := object([]byte(` { "z" : 1 , "a":{"n":[1,2]}, "m":null, "e\u0301":"x" } `))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, raw string }{{"z", `1`}, {"a", `{"n":[1,2]}`}, {"m", `null`}, {"e\u0301", `"x"`}}
	if len(obj) != len(want) {
		t.Fatalf("got %d members, want %d: %+v", len(obj), len(want), obj)
	}
	for i, w := range want {
		if obj[i].name != w.name || string(obj[i].raw) != w.raw {
			t.Errorf("member %d = %q:%s, want %q:%s", i, obj[i].name, obj[i].raw, w.name, w.raw)
		}
	}
	for _, bad := range []string{`[]`, `"s"`, `1`} {
		if _, err := object([]byte(bad)); err == nil {
			t.Errorf("object accepted %s", bad)
		}
	}
}
