package provider

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// recorder is an attrSetter that keeps what was set.
type recorder map[string]any

func (r recorder) SetAttribute(_ context.Context, p path.Path, val any) diag.Diagnostics {
	r[p.String()] = val
	return nil
}

// A read of keys/<name> carries fields the provider has no attribute for,
// such as key_summary (lines for vault read's table): the ring's state is
// set from the structured fields, and the extra field neither fails the
// read nor lands in state.
func TestRingStatusIgnoresFieldsItDoesNotKnow(t *testing.T) {
	body := `{
		"active_kid": "k1", "pending_kid": "k2", "next_rotation": 1772370000,
		"signing_keys": [
			{"kid": "k1", "alg": "ES256", "state": "active", "publish_at": 1772366400, "activate_at": 1772366400, "retire_at": 1772370000, "remove_at": 1772377200, "revoked_at": 0, "forced": true, "gate_note": "", "imported": false, "thumbprint": "k1"},
			{"kid": "k2", "alg": "ES256", "state": "pending", "publish_at": 1772366400, "activate_at": 1772370000, "retire_at": 0, "remove_at": 0, "revoked_at": 0, "forced": false, "gate_note": "", "imported": false, "thumbprint": "k2"}
		],
		"key_summary": ["kid=k1 state=active alg=ES256 publish_at=2026-03-01T12:00:00Z activate_at=2026-03-01T12:00:00Z retire_at=2026-03-01T13:00:00Z remove_at=2026-03-01T15:00:00Z forced",
			"kid=k2 state=pending alg=ES256 publish_at=2026-03-01T12:00:00Z activate_at=2026-03-01T13:00:00Z retire_at=- remove_at=-"],
		"trusted_keys": []
	}`
	var data map[string]any
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber() // as the Vault API client decodes
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	got := recorder{}
	if diags := setRingStatus(context.Background(), data, got); diags.HasError() {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(got) != 4 {
		t.Errorf("set %d attributes, want active_kid, pending_kid, next_rotation, signing_keys: %v", len(got), got)
	}
	if got["active_kid"] != types.StringValue("k1") || got["next_rotation"] != types.Int64Value(1772370000) {
		t.Errorf("active_kid %v next_rotation %v", got["active_kid"], got["next_rotation"])
	}
	keys, ok := got["signing_keys"].(types.List)
	if !ok || len(keys.Elements()) != 2 {
		t.Fatalf("signing_keys %v", got["signing_keys"])
	}
	first := keys.Elements()[0].(types.Object).Attributes()
	want := map[string]attr.Value{"kid": types.StringValue("k1"), "state": types.StringValue("active"), "retire_at": types.Int64Value(1772370000), "forced": types.BoolValue(true)}
	for k, v := range want {
		if !first[k].Equal(v) {
			t.Errorf("signing_keys[0].%s = %v, want %v", k, first[k], v)
		}
	}
}
