package acctest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// attrs returns the flat attributes of a resource or data source in the
// state ("signing_keys.0.kid", "kids.#", ...).
func attrs(s *terraform.State, addr string) (map[string]string, error) {
	rs, ok := s.RootModule().Resources[addr]
	if !ok || rs.Primary == nil {
		return nil, fmt.Errorf("%s is not in the state", addr)
	}
	return rs.Primary.Attributes, nil
}

// vaultNumber reads an integer field of a Vault answer.
func vaultNumber(t *testing.T, data map[string]any, field string) int64 {
	t.Helper()
	n, ok := data[field].(json.Number)
	if !ok {
		t.Fatalf("%s is %T (%v), not a number", field, data[field], data[field])
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return i
}

// keyTimes are a key's timestamps as the plugin reports them.
type keyTimes struct {
	Alg                                       string
	PublishAt, ActivateAt, RetireAt, RemoveAt int64
}

// movedFrom reports how a key's schedule changed from was to k: a
// timestamp that was set (non-zero) and differs. A retirement that was not
// scheduled yet (0) and now is, because a successor joined, is no move.
func (k keyTimes) movedFrom(was keyTimes) string {
	switch {
	case k.Alg != was.Alg:
		return fmt.Sprintf("algorithm %s became %s", was.Alg, k.Alg)
	case k.PublishAt != was.PublishAt:
		return fmt.Sprintf("publish_at %d became %d", was.PublishAt, k.PublishAt)
	case k.ActivateAt != was.ActivateAt:
		return fmt.Sprintf("activate_at %d became %d", was.ActivateAt, k.ActivateAt)
	case was.RetireAt != 0 && k.RetireAt != was.RetireAt:
		return fmt.Sprintf("retire_at %d became %d", was.RetireAt, k.RetireAt)
	case was.RemoveAt != 0 && k.RemoveAt != was.RemoveAt:
		return fmt.Sprintf("remove_at %d became %d", was.RemoveAt, k.RemoveAt)
	}
	return ""
}

// keysUnmoved checks that every key of before is still in after, on the
// same schedule: a change of the ring's settings applies to new keys only.
func keysUnmoved(before, after map[string]keyTimes) error {
	for kid, was := range before {
		k, ok := after[kid]
		if !ok {
			return fmt.Errorf("key %s is gone", kid)
		}
		if m := k.movedFrom(was); m != "" {
			return fmt.Errorf("key %s moved: %s", kid, m)
		}
	}
	return nil
}

// ringKeys reads every key of a ring from Vault, by kid.
func ringKeys(t *testing.T, mount, ring string) map[string]keyTimes {
	t.Helper()
	data := vaultRead(t, mount+"/keys/"+ring)
	if data == nil {
		t.Fatalf("ring %s/%s not found", mount, ring)
	}
	out := map[string]keyTimes{}
	items, _ := data["signing_keys"].([]any)
	for _, it := range items {
		m := it.(map[string]any)
		num := func(f string) int64 { return vaultNumber(t, m, f) }
		out[m["kid"].(string)] = keyTimes{
			Alg: m["alg"].(string), PublishAt: num("publish_at"), ActivateAt: num("activate_at"),
			RetireAt: num("retire_at"), RemoveAt: num("remove_at"),
		}
	}
	return out
}

// jwksKIDs returns the kids the mount's JWKS (or one ring's) serves now.
func jwksKIDs(t *testing.T, mount, rel string) []string {
	t.Helper()
	kids, err := kidsIn(document(t, mount, rel))
	if err != nil {
		t.Fatal(err)
	}
	return kids
}

// kidsIn returns the kids of a JWKS document, in its order.
func kidsIn(jwks []byte) ([]string, error) {
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		return nil, err
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.KID)
	}
	return kids, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rotationsTotal is the plugin's count of rotations of a ring for a reason
// ("manual, forced", "scheduled", ...), from its metrics.
func rotationsTotal(t *testing.T, mount, ring, reason string) float64 {
	t.Helper()
	data := vaultRead(t, mount+"/metrics")
	series, _ := data["jwt_rotor_rotations_total"].([]any)
	total := 0.0
	for _, s := range series {
		m := s.(map[string]any)
		labels, _ := m["labels"].(map[string]any)
		if labels["ring"] == ring && labels["reason"] == reason {
			f, err := m["value"].(json.Number).Float64()
			if err != nil {
				t.Fatal(err)
			}
			total += f
		}
	}
	return total
}

// expectChange checks that the plan changes one attribute of a resource
// from before to after: an out-of-band change shows as this diff.
type expectChange struct {
	addr, attr    string
	before, after any
}

func (c expectChange) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != c.addr {
			continue
		}
		b, _ := rc.Change.Before.(map[string]any)
		a, _ := rc.Change.After.(map[string]any)
		if !reflect.DeepEqual(norm(b[c.attr]), norm(c.before)) || !reflect.DeepEqual(norm(a[c.attr]), norm(c.after)) {
			resp.Error = fmt.Errorf("%s.%s: plan changes %v to %v, want %v to %v", c.addr, c.attr, b[c.attr], a[c.attr], c.before, c.after)
		}
		return
	}
	resp.Error = fmt.Errorf("%s is not in the plan", c.addr)
}

// norm passes a value through JSON so that []string and []any compare.
func norm(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// msgRE matches the given pieces of a message, in order, however Terraform
// wraps its lines.
func msgRE(pieces ...string) *regexp.Regexp {
	var quoted []string
	for _, p := range pieces {
		quoted = append(quoted, strings.Join(strings.Fields(regexp.QuoteMeta(p)), `\s+`))
	}
	return regexp.MustCompile(`(?s)` + strings.Join(quoted, `.*`))
}

// checkReplaced checks that a new name replaced the object at Vault path
// old (a ring, a role) with one at path new.
func checkReplaced(t *testing.T, old, new string) func(*terraform.State) error {
	return func(*terraform.State) error {
		if vaultRead(t, old) != nil {
			return fmt.Errorf("the replaced %s is still readable", old)
		}
		if vaultRead(t, new) == nil {
			return fmt.Errorf("%s was not created", new)
		}
		return nil
	}
}

// checkPath compares the fields given with what Vault reads at p.
func checkPath(t *testing.T, p string, want map[string]any) func(*terraform.State) error {
	return func(*terraform.State) error {
		data := vaultRead(t, p)
		if data == nil {
			return fmt.Errorf("%s: nothing there", p)
		}
		for f, w := range want {
			if !reflect.DeepEqual(norm(data[f]), norm(w)) {
				return fmt.Errorf("Vault %s: %s = %v, want %v", p, f, data[f], w)
			}
		}
		return nil
	}
}
