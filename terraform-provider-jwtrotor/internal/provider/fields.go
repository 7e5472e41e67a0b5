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
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/defaults"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
)

// A resource that names an object of the plugin (config, keys/<name>,
// roles/<name>) is declared as a table of fields, one per field of the
// plugin's write: the table gives the schema, the write body and the
// reading of the plugin's answer. Adding a plugin field to a resource is
// one entry in its table.

type kind int

const (
	kString   kind = iota // string
	kInt                  // number, integer
	kFloat                // number
	kBool                 // bool
	kDuration             // string in Terraform, integer seconds in the plugin
	kStrings              // list of strings
	kJSON                 // JSON object as a string
)

type field struct {
	name string
	kind kind
	// desc is the plugin's own description of the field, verbatim; the
	// schema appends the Terraform form of durations and JSON objects.
	desc     string
	required bool
	// replace: a change needs a new object (the name).
	replace bool
	// def is the plugin's default, in the attribute's Terraform form
	// (string, int64, float64, bool, a duration string, []string{} or
	// "{}"). Removing the attribute from the configuration returns the
	// field to it, visibly in the plan.
	def any
	// lateDefault: the plugin computes the default when the object is
	// created (publish_lead follows rotation_period) and keeps the value
	// afterwards; the attribute is computed and kept from the state.
	lateDefault bool

	strV   []validator.String
	intV   []validator.Int64
	floatV []validator.Float64
	listV  []validator.List
}

func (f field) description() string {
	switch f.kind {
	case kDuration:
		return f.desc + " Terraform form: a duration such as \"24h\", \"90m\" or \"1h30m\", or whole seconds such as \"3600\"."
	case kJSON:
		return f.desc + " Terraform form: a JSON object string; write it with jsonencode({...})."
	}
	return f.desc
}

// resourceAttribute is the field's attribute in a resource schema.
func (f field) resourceAttribute() schema.Attribute {
	optional := !f.required
	computed := f.def != nil || f.lateDefault
	desc := f.description()
	switch f.kind {
	case kString, kDuration, kJSON:
		a := schema.StringAttribute{Required: f.required, Optional: optional, Computed: computed, Description: desc, MarkdownDescription: desc,
			CustomType: f.stringType(), Validators: f.strV, Default: defaultOf(f.def, stringdefault.StaticString),
			PlanModifiers: replaceIf(f.replace, stringplanmodifier.RequiresReplace())}
		if f.lateDefault {
			a.PlanModifiers = append(a.PlanModifiers, stringplanmodifier.UseStateForUnknown())
		}
		return a
	case kInt:
		return schema.Int64Attribute{Required: f.required, Optional: optional, Computed: computed, Description: desc, MarkdownDescription: desc,
			Validators: f.intV, Default: defaultOf(f.def, int64default.StaticInt64), PlanModifiers: replaceIf(f.replace, int64planmodifier.RequiresReplace())}
	case kFloat:
		return schema.Float64Attribute{Required: f.required, Optional: optional, Computed: computed, Description: desc, MarkdownDescription: desc,
			Validators: f.floatV, Default: defaultOf(f.def, float64default.StaticFloat64), PlanModifiers: replaceIf(f.replace, float64planmodifier.RequiresReplace())}
	case kBool:
		return schema.BoolAttribute{Required: f.required, Optional: optional, Computed: computed, Description: desc, MarkdownDescription: desc,
			Default: defaultOf(f.def, booldefault.StaticBool), PlanModifiers: replaceIf(f.replace, boolplanmodifier.RequiresReplace())}
	case kStrings:
		return schema.ListAttribute{ElementType: types.StringType, Required: f.required, Optional: optional, Computed: computed, Description: desc, MarkdownDescription: desc,
			Validators: f.listV, Default: defaultOf(f.def, staticStringList), PlanModifiers: replaceIf(f.replace, listplanmodifier.RequiresReplace())}
	}
	panic("unknown kind")
}

// defaultOf is the attribute default of the field's def (of type T, as
// the table gives it), made by static; none when def is nil.
func defaultOf[T, D any](def any, static func(T) D) D {
	if def == nil {
		var none D
		return none
	}
	return static(def.(T))
}

// staticStringList is the default of a list of strings.
func staticStringList(items []string) defaults.List {
	return listdefault.StaticValue(stringList(items))
}

// replaceIf is the plan modifiers of an attribute whose change needs a new
// object (replace), and none otherwise.
func replaceIf[M any](replace bool, requiresReplace M) []M {
	if !replace {
		return nil
	}
	return []M{requiresReplace}
}

// stringType is the custom type of a string-valued field: durations and
// JSON objects compare by meaning, plain strings need none.
func (f field) stringType() basetypes.StringTypable {
	switch f.kind {
	case kDuration:
		return DurationType{}
	case kJSON:
		return JSONObjectType{}
	}
	return nil
}

// dataSourceAttribute is the field's attribute in a data source that reads
// the object.
func (f field) dataSourceAttribute() dsschema.Attribute {
	desc := f.description()
	switch f.kind {
	case kString, kDuration, kJSON:
		return dsschema.StringAttribute{Computed: true, Description: desc, MarkdownDescription: desc, CustomType: f.stringType()}
	case kInt:
		return dsschema.Int64Attribute{Computed: true, Description: desc, MarkdownDescription: desc}
	case kFloat:
		return dsschema.Float64Attribute{Computed: true, Description: desc, MarkdownDescription: desc}
	case kBool:
		return dsschema.BoolAttribute{Computed: true, Description: desc, MarkdownDescription: desc}
	case kStrings:
		return dsschema.ListAttribute{Computed: true, ElementType: types.StringType, Description: desc, MarkdownDescription: desc}
	}
	panic("unknown kind")
}

// attrGetter is tfsdk.Config, tfsdk.Plan or tfsdk.State.
type attrGetter interface {
	GetAttribute(ctx context.Context, p path.Path, target any) diag.Diagnostics
}

type attrSetter interface {
	SetAttribute(ctx context.Context, p path.Path, val any) diag.Diagnostics
}

// get is the field's value in from, of the attribute's own value type
// (types.String, Duration, JSONObject, types.Int64, ...).
func (f field) get(ctx context.Context, from attrGetter) (attr.Value, diag.Diagnostics) {
	var v attr.Value
	d := from.GetAttribute(ctx, path.Root(f.name), &v)
	return v, d
}

// toAPI is the value as the plugin's write takes it.
func (f field) toAPI(ctx context.Context, v attr.Value) (any, error) {
	switch f.kind {
	case kString:
		return v.(types.String).ValueString(), nil
	case kDuration:
		n, err := ParseDuration(v.(Duration).ValueString())
		return n, err
	case kJSON:
		return v.(JSONObject).Object()
	case kInt:
		return v.(types.Int64).ValueInt64(), nil
	case kFloat:
		return v.(types.Float64).ValueFloat64(), nil
	case kBool:
		return v.(types.Bool).ValueBool(), nil
	case kStrings:
		out := []string{}
		if d := v.(types.List).ElementsAs(ctx, &out, false); d.HasError() {
			return nil, fmt.Errorf("%s: not a list of strings", f.name)
		}
		return out, nil
	}
	panic("unknown kind")
}

// fromAPI converts the plugin's read of the field (decoded from JSON with
// numbers as json.Number) to the attribute's value.
func (f field) fromAPI(x any) (attr.Value, error) {
	bad := func() (attr.Value, error) {
		return nil, fmt.Errorf("the plugin returned %s as %T (%v), not a %s", f.name, x, x, f.kindName())
	}
	switch f.kind {
	case kString:
		s, ok := x.(string)
		if !ok {
			return bad()
		}
		return types.StringValue(s), nil
	case kDuration, kInt:
		n, ok := x.(json.Number)
		if !ok {
			return bad()
		}
		i, err := n.Int64()
		if err != nil {
			return bad()
		}
		if f.kind == kDuration {
			return DurationOf(i), nil
		}
		return types.Int64Value(i), nil
	case kFloat:
		n, ok := x.(json.Number)
		if !ok {
			return bad()
		}
		fl, err := n.Float64()
		if err != nil {
			return bad()
		}
		return types.Float64Value(fl), nil
	case kBool:
		b, ok := x.(bool)
		if !ok {
			return bad()
		}
		return types.BoolValue(b), nil
	case kStrings:
		if x == nil {
			return stringList(nil), nil
		}
		items, ok := x.([]any)
		if !ok {
			return bad()
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			s, ok := it.(string)
			if !ok {
				return bad()
			}
			out = append(out, s)
		}
		return stringList(out), nil
	case kJSON:
		if x == nil {
			return JSONObjectOf(nil)
		}
		m, ok := x.(map[string]any)
		if !ok {
			return bad()
		}
		return JSONObjectOf(m)
	}
	panic("unknown kind")
}

func (f field) kindName() string {
	return [...]string{"string", "integer", "number", "bool", "number of seconds", "list of strings", "JSON object"}[f.kind]
}

// sameValue reports whether two values of the field mean the same to the
// plugin.
func (f field) sameValue(ctx context.Context, a, b attr.Value) bool {
	if a.IsNull() || b.IsNull() || a.IsUnknown() || b.IsUnknown() {
		return a.Equal(b)
	}
	if sv, ok := a.(basetypes.StringValuableWithSemanticEquals); ok {
		bv, ok := b.(basetypes.StringValuable)
		if ok {
			eq, _ := sv.StringSemanticEquals(ctx, bv)
			return eq
		}
	}
	return a.Equal(b)
}

func stringList(items []string) types.List {
	vals := make([]attr.Value, 0, len(items))
	for _, s := range items {
		vals = append(vals, types.StringValue(s))
	}
	return types.ListValueMust(types.StringType, vals)
}

// fields is the table of one object.
type fields []field

func (fs fields) names() fieldsOf {
	out := fieldsOf{}
	for _, f := range fs {
		out[f.name] = true
	}
	return out
}

// writeBody is what a create or an update sends. A create sends the
// attributes the configuration sets, and the plugin applies its own
// defaults to the rest; an update sends the attributes whose planned value
// differs from the state (refreshed from Vault, so drift is corrected), and
// the plugin keeps the others. Null or unknown values are never sent. The
// fields in skip (the name, which is in the path) are left out.
func (fs fields) writeBody(ctx context.Context, config, plan attrGetter, state attrGetter, skip ...string) (map[string]any, diag.Diagnostics) {
	var diags diag.Diagnostics
	body := map[string]any{}
next:
	for _, f := range fs {
		for _, s := range skip {
			if s == f.name {
				continue next
			}
		}
		pv, d := f.get(ctx, plan)
		diags.Append(d...)
		if d.HasError() || pv.IsNull() || pv.IsUnknown() {
			continue
		}
		if state == nil {
			cv, d := f.get(ctx, config)
			diags.Append(d...)
			if d.HasError() || cv.IsNull() {
				continue
			}
		} else {
			sv, d := f.get(ctx, state)
			diags.Append(d...)
			if d.HasError() || f.sameValue(ctx, pv, sv) {
				continue
			}
		}
		x, err := f.toAPI(ctx, pv)
		if err != nil {
			diags.AddAttributeError(path.Root(f.name), "Invalid value", err.Error())
			continue
		}
		body[f.name] = x
	}
	return body, diags
}

// setFromAPI sets every field the plugin's read returned.
func (fs fields) setFromAPI(ctx context.Context, data map[string]any, to attrSetter) diag.Diagnostics {
	var diags diag.Diagnostics
	for _, f := range fs {
		x, ok := data[f.name]
		if !ok {
			continue
		}
		v, err := f.fromAPI(x)
		if err != nil {
			diags.AddAttributeError(path.Root(f.name), "Unexpected value from the plugin", err.Error())
			continue
		}
		diags.Append(to.SetAttribute(ctx, path.Root(f.name), v)...)
	}
	return diags
}

// valueOrDefault is the configured value of a field, or its default when
// the configuration leaves it out; ok is false when neither is known.
func (fs fields) durationOrDefault(ctx context.Context, config attrGetter, name string) (int64, bool) {
	for _, f := range fs {
		if f.name != name {
			continue
		}
		v, d := f.get(ctx, config)
		if d.HasError() || v.IsUnknown() {
			return 0, false
		}
		if v.IsNull() {
			if s, ok := f.def.(string); ok {
				n, err := ParseDuration(s)
				return n, err == nil
			}
			return 0, false
		}
		return v.(Duration).Seconds()
	}
	return 0, false
}
