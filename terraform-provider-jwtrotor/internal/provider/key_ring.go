package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	dsschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

var algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// ringNameField is the name of a ring, in the resource and the data source.
var ringNameField = field{name: "name", kind: kString, required: true, replace: true,
	desc: "Name of the key ring.", strV: []validator.String{nameCheck("name")}}

// keyRingFields are the settings of keys/<name> (path_keys.go).
var keyRingFields = fields{
	ringNameField,
	{name: "algorithm", kind: kString, def: "RS256",
		desc: "Signing algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA. A change applies to newly generated keys only; each kid keeps its algorithm for life.",
		strV: []validator.String{oneOf("algorithm", algorithms...)}},
	{name: "rsa_bits", kind: kInt, def: int64(2048),
		desc: "RSA modulus size for RS* and PS* algorithms: 2048, 3072 or 4096.",
		intV: []validator.Int64{intOneOf{name: "rsa_bits", allowed: []int64{2048, 3072, 4096}}}},
	{name: "rotation_period", kind: kDuration, def: "24h",
		desc: "How long each key signs before its successor takes over. At least 10s.",
		strV: []validator.String{durationBetween("rotation_period", 10, -1, "periods under an hour are for tests and drills")}},
	{name: "verification_ttl", kind: kDuration, def: "24h",
		desc: "How long a key stays in the JWKS after it stops signing. At least the longest max_ttl of the roles using the ring plus 60s.",
		strV: []validator.String{durationBetween("verification_ttl", 61, -1, "60s of clock skew plus a token life of at least 1s")}},
	{name: "publish_lead", kind: kDuration, lateDefault: true,
		desc: "How long a key is in the JWKS before it may sign. Defaults to rotation_period; at least 2 x jwks_max_age. Cover the slowest verifier's refresh interval.",
		strV: []validator.String{durationBetween("publish_lead", 2, -1, "it is at least 2 x jwks_max_age, which is at least 1s")}},
	{name: "min_verifier_coverage", kind: kFloat, def: float64(0),
		desc:   "Activation gate: share (0 to 1) of declared verifiers that must hold a pending key before it activates. 0 turns the gate off.",
		floatV: []validator.Float64{floatBetween{name: "min_verifier_coverage", lo: 0, hi: 1, why: "give the share of declared verifiers that must hold a key before it activates, such as 0.9 (0 turns the gate off)"}}},
	{name: "max_activation_delay", kind: kDuration, def: "0s",
		desc: "Activation gate: the longest a pending key may wait for verifier coverage; at most rotation_period."},
}

// ringStatusDescriptions describe the computed state of a ring.
var ringStatusDescriptions = map[string]string{
	"active_kid":    "Kid of the key that signs now; empty while the ring's first key is still pending.",
	"pending_kid":   "Kid of the next key to sign; empty when none is scheduled.",
	"next_rotation": "When pending_kid starts signing, in Unix seconds; 0 when none is scheduled.",
	"signing_keys":  "Every key of the ring with its state and timestamps (Unix seconds, 0 = not scheduled yet), oldest first. The plugin returns no key material.",
}

var signingKeyAttrs = []struct {
	name, desc string
	typ        attr.Type
}{
	{"kid", "Key id, the kid header of its tokens and of its JWK.", types.StringType},
	{"alg", "Algorithm of the key.", types.StringType},
	{"state", "pending, active, retiring, revoked or removed.", types.StringType},
	{"publish_at", "When the key enters the JWKS.", types.Int64Type},
	{"activate_at", "When the key starts signing.", types.Int64Type},
	{"retire_at", "When the key stops signing.", types.Int64Type},
	{"remove_at", "When the key leaves the JWKS.", types.Int64Type},
	{"revoked_at", "When the key was revoked; 0 if never.", types.Int64Type},
	{"forced", "The key was made to sign before it had been published for publish_lead.", types.BoolType},
	{"gate_note", "Why the verifier gate holds the key, if it does.", types.StringType},
}

func signingKeyType() types.ObjectType {
	m := map[string]attr.Type{}
	for _, a := range signingKeyAttrs {
		m[a.name] = a.typ
	}
	return types.ObjectType{AttrTypes: m}
}

// ringStatusAttributes are the computed attributes of a ring's status, in
// the schema package of a resource or of a data source: str, num and flag
// make a computed string, integer and bool, list the list of signing keys.
func ringStatusAttributes[A any](str, num, flag func(desc string) A, list func(desc string, key map[string]A) A) map[string]A {
	key := map[string]A{}
	for _, a := range signingKeyAttrs {
		switch a.typ {
		case types.StringType:
			key[a.name] = str(a.desc)
		case types.Int64Type:
			key[a.name] = num(a.desc)
		case types.BoolType:
			key[a.name] = flag(a.desc)
		}
	}
	d := ringStatusDescriptions
	return map[string]A{
		"active_kid":    str(d["active_kid"]),
		"pending_kid":   str(d["pending_kid"]),
		"next_rotation": num(d["next_rotation"]),
		"signing_keys":  list(d["signing_keys"], key),
	}
}

func ringStatusResourceAttributes() map[string]schema.Attribute {
	return ringStatusAttributes(
		func(d string) schema.Attribute { return schema.StringAttribute{Computed: true, Description: d} },
		func(d string) schema.Attribute { return schema.Int64Attribute{Computed: true, Description: d} },
		func(d string) schema.Attribute { return schema.BoolAttribute{Computed: true, Description: d} },
		func(d string, key map[string]schema.Attribute) schema.Attribute {
			return schema.ListNestedAttribute{Computed: true, Description: d, NestedObject: schema.NestedAttributeObject{Attributes: key}}
		})
}

func ringStatusDataSourceAttributes() map[string]dsschema.Attribute {
	return ringStatusAttributes(
		func(d string) dsschema.Attribute { return dsschema.StringAttribute{Computed: true, Description: d} },
		func(d string) dsschema.Attribute { return dsschema.Int64Attribute{Computed: true, Description: d} },
		func(d string) dsschema.Attribute { return dsschema.BoolAttribute{Computed: true, Description: d} },
		func(d string, key map[string]dsschema.Attribute) dsschema.Attribute {
			return dsschema.ListNestedAttribute{Computed: true, Description: d, NestedObject: dsschema.NestedAttributeObject{Attributes: key}}
		})
}

// setRingStatus sets the computed state of a ring from the plugin's read.
func setRingStatus(ctx context.Context, data map[string]any, to attrSetter) diag.Diagnostics {
	var diags diag.Diagnostics
	str := func(m map[string]any, k string) types.String {
		s, _ := m[k].(string)
		return types.StringValue(s)
	}
	num := func(m map[string]any, k string) types.Int64 {
		n, _ := m[k].(json.Number)
		i, _ := n.Int64()
		return types.Int64Value(i)
	}
	diags.Append(to.SetAttribute(ctx, path.Root("active_kid"), str(data, "active_kid"))...)
	diags.Append(to.SetAttribute(ctx, path.Root("pending_kid"), str(data, "pending_kid"))...)
	diags.Append(to.SetAttribute(ctx, path.Root("next_rotation"), num(data, "next_rotation"))...)

	items, ok := data["signing_keys"].([]any)
	if !ok && data["signing_keys"] != nil {
		diags.AddError("Unexpected value from the plugin", fmt.Sprintf("signing_keys is %T, not a list", data["signing_keys"]))
		return diags
	}
	objType := signingKeyType()
	keys := make([]attr.Value, 0, len(items))
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			diags.AddError("Unexpected value from the plugin", fmt.Sprintf("a signing key is %T, not an object", it))
			return diags
		}
		vals := map[string]attr.Value{}
		for _, a := range signingKeyAttrs {
			switch a.typ {
			case types.StringType:
				vals[a.name] = str(m, a.name)
			case types.Int64Type:
				vals[a.name] = num(m, a.name)
			case types.BoolType:
				b, _ := m[a.name].(bool)
				vals[a.name] = types.BoolValue(b)
			}
		}
		obj, d := types.ObjectValue(objType.AttrTypes, vals)
		diags.Append(d...)
		keys = append(keys, obj)
	}
	list, d := types.ListValue(objType, keys)
	diags.Append(d...)
	diags.Append(to.SetAttribute(ctx, path.Root("signing_keys"), list)...)
	return diags
}
