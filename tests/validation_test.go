package tests

import (
	"net/http"
	"testing"
)

// TestUnknownFieldsRejected checks that a typo in a write is a 400 that names
// the field and stores nothing, on create and on update.
func TestUnknownFieldsRejected(t *testing.T) {
	t.Parallel()
	m := newMount(t, "validate", nil)
	createRing(t, m, "existing", map[string]any{"algorithm": "ES256", "rotation_period": 43200})
	createRole(t, m, "existing", map[string]any{"key": "existing", "audiences": []string{"a"}, "ttl": 300})

	cases := []struct {
		name  string
		path  string
		body  map[string]any
		field string // what the error must name
	}{
		{
			name: "new key with a typo", path: "keys/typo",
			body:  map[string]any{"algorithm": "ES256", "rotation_priod": 86400},
			field: "rotation_priod",
		},
		{
			name: "new key with a bad bound", path: "keys/short",
			body:  map[string]any{"algorithm": "ES256", "rotation_period": 5},
			field: "rotation_period",
		},
		{
			name: "new role with a typo", path: "roles/typo",
			body:  map[string]any{"key": "existing", "audiences": []string{"a"}, "audiense": "b"},
			field: "audiense",
		},
		{
			name: "existing key with a typo", path: "keys/existing",
			body:  map[string]any{"rotation_period": 28800, "verifcation_ttl": 86400},
			field: "verifcation_ttl",
		},
		{
			name: "existing role with a typo", path: "roles/existing",
			body:  map[string]any{"ttl": 600, "max-ttl": 900},
			field: "max-ttl",
		},
		{
			// A misspelt opt-in must not look enabled while it is not.
			name: "existing role with allow_token_read misspelt", path: "roles/existing",
			body:  map[string]any{"allow_token_raed": true},
			field: "allow_token_raed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := env.root.read(t, m.p(tc.path))
			resp := env.root.write(t, m.p(tc.path), tc.body)
			if resp.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", resp.Status, resp.Body)
			}
			if !resp.errorsMention(tc.field) {
				t.Errorf("errors %q do not name %q", resp.Errors, tc.field)
			}
			after := env.root.read(t, m.p(tc.path))
			switch {
			case before.Status == http.StatusNotFound:
				if after.Status != http.StatusNotFound {
					t.Errorf("rejected create left something at %s: status %d: %s", tc.path, after.Status, after.Body)
				}
			case before.Status == http.StatusOK:
				if after.Status != http.StatusOK || !sameSettings(before.Data, after.Data) {
					t.Errorf("rejected update changed %s:\nbefore %v\nafter  %v", tc.path, before.Data, after.Data)
				}
			default:
				t.Fatalf("read %s before the write: status %d", tc.path, before.Status)
			}
		})
	}

	// The listings do not name the rejected objects either.
	for _, path := range []string{"keys", "roles"} {
		resp := env.root.do(t, "LIST", m.p(path), nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("LIST %s: status %d: %s", path, resp.Status, resp.Body)
		}
		names := stringList(resp.Data["keys"])
		if len(names) != 1 || names[0] != "existing" {
			t.Errorf("LIST %s = %v, want only [existing]", path, names)
		}
	}
}

// sameSettings compares two reads field by field, ignoring the computed
// state of a ring (next_rotation moves with time only if a rotation runs,
// which a rejected write must not cause, but signing_keys states do).
func sameSettings(a, b map[string]any) bool {
	for k, va := range a {
		if k == "signing_keys" {
			continue
		}
		if vb, ok := b[k]; !ok || !equalJSON(va, vb) {
			return false
		}
	}
	return len(a) == len(b)
}

func equalJSON(a, b any) bool {
	switch av := a.(type) {
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equalJSON(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !equalJSON(av[k], bv[k]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
