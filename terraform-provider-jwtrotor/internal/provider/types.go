package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/attr/xattr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// Durations are strings in Terraform ("24h", "90m", "1h30m", or a number of
// seconds such as "3600") and integer seconds in the plugin. A value read
// back from the plugin equals the configured one when both are the same
// number of seconds, so "1440m" in HCL shows no drift against 86400 in Vault.

// ParseDuration returns the whole seconds of s: Go duration syntax (h, m, s)
// or a plain number of seconds. It refuses negative and fractional seconds.
func ParseDuration(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration; write it like 24h, 90m, 1h30m or 3600 (seconds)")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like 24h, 90m, 1h30m or 3600 (seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%q is not a whole number of seconds; the plugin counts durations in seconds", s)
	}
	return int64(d / time.Second), nil
}

// FormatDuration writes seconds the way a person would: 86400 as "24h",
// 5400 as "1h30m", 45 as "45s", 0 as "0s".
func FormatDuration(secs int64) string {
	if secs == 0 {
		return "0s"
	}
	var b strings.Builder
	if h := secs / 3600; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m := secs % 3600 / 60; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s := secs % 60; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// stringType is the Terraform type of a string attribute whose values are
// V: a string with a meaning of its own (a duration, a JSON object), which
// V compares semantically and checks at plan time.
type stringType[V stringValue[V]] struct{ basetypes.StringType }

// stringValue is what the type of V needs from V: equality by meaning, a
// check at plan time, the type's name and V made from a plain string value.
type stringValue[V any] interface {
	basetypes.StringValuableWithSemanticEquals
	xattr.ValidateableAttribute
	typeName() string
	from(basetypes.StringValue) V
}

var (
	_ basetypes.StringTypable = DurationType{}
	_ basetypes.StringTypable = JSONObjectType{}
)

func (t stringType[V]) String() string {
	var v V
	return v.typeName()
}

func (t stringType[V]) Equal(o attr.Type) bool {
	_, ok := o.(stringType[V])
	return ok
}

func (t stringType[V]) ValueType(context.Context) attr.Value {
	var v V
	return v
}

func (t stringType[V]) ValueFromString(_ context.Context, in basetypes.StringValue) (basetypes.StringValuable, diag.Diagnostics) {
	var v V
	return v.from(in), nil
}

func (t stringType[V]) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.StringType.ValueFromTerraform(ctx, in)
	if err != nil {
		return nil, err
	}
	s, ok := v.(basetypes.StringValue)
	if !ok {
		return nil, fmt.Errorf("unexpected value type %T", v)
	}
	var w V
	return w.from(s), nil
}

// DurationType is the Terraform type of a duration attribute.
type DurationType = stringType[Duration]

// Duration is a duration attribute's value.
type Duration struct{ basetypes.StringValue }

// DurationOf is the value the plugin's seconds read back as.
func DurationOf(secs int64) Duration {
	return Duration{StringValue: basetypes.NewStringValue(FormatDuration(secs))}
}

func (v Duration) Type(context.Context) attr.Type { return DurationType{} }

func (Duration) typeName() string                      { return "DurationType" }
func (Duration) from(s basetypes.StringValue) Duration { return Duration{StringValue: s} }

func (v Duration) Equal(o attr.Value) bool {
	other, ok := o.(Duration)
	return ok && v.StringValue.Equal(other.StringValue)
}

// Seconds is the value in seconds; ok is false when it is null, unknown or
// not a duration.
func (v Duration) Seconds() (int64, bool) {
	if v.IsNull() || v.IsUnknown() {
		return 0, false
	}
	n, err := ParseDuration(v.ValueString())
	return n, err == nil
}

func (v Duration) StringSemanticEquals(_ context.Context, other basetypes.StringValuable) (bool, diag.Diagnostics) {
	o, ok := other.(Duration)
	if !ok {
		return false, nil
	}
	a, okA := v.Seconds()
	b, okB := o.Seconds()
	return okA && okB && a == b, nil
}

// ValidateAttribute checks the syntax at plan time.
func (v Duration) ValidateAttribute(_ context.Context, req xattr.ValidateAttributeRequest, resp *xattr.ValidateAttributeResponse) {
	if v.IsNull() || v.IsUnknown() {
		return
	}
	if _, err := ParseDuration(v.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration", err.Error())
	}
}

// JSONObjectType is the type of an attribute that holds a JSON object as a
// string (write it with jsonencode). Two values are equal when they decode
// to the same object, whatever their spacing and member order.
type JSONObjectType = stringType[JSONObject]

// JSONObject is the value of a JSON object attribute.
type JSONObject struct{ basetypes.StringValue }

// JSONObjectOf renders an object read from the plugin.
func JSONObjectOf(m map[string]any) (JSONObject, error) {
	if m == nil {
		m = map[string]any{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return JSONObject{}, err
	}
	return JSONObject{StringValue: basetypes.NewStringValue(string(b))}, nil
}

func (v JSONObject) Type(context.Context) attr.Type { return JSONObjectType{} }

func (JSONObject) typeName() string                        { return "JSONObjectType" }
func (JSONObject) from(s basetypes.StringValue) JSONObject { return JSONObject{StringValue: s} }

func (v JSONObject) Equal(o attr.Value) bool {
	other, ok := o.(JSONObject)
	return ok && v.StringValue.Equal(other.StringValue)
}

// Object decodes the value.
func (v JSONObject) Object() (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(v.ValueString()))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("not a JSON object; write it with jsonencode({...})")
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value; write one object with jsonencode({...})")
	}
	return m, nil
}

func (v JSONObject) StringSemanticEquals(_ context.Context, other basetypes.StringValuable) (bool, diag.Diagnostics) {
	o, ok := other.(JSONObject)
	if !ok {
		return false, nil
	}
	a, errA := plainJSON(v.ValueString())
	b, errB := plainJSON(o.ValueString())
	return errA == nil && errB == nil && reflect.DeepEqual(a, b), nil
}

// plainJSON decodes s with numbers as float64, so 1 and 1.0 compare equal.
func plainJSON(s string) (any, error) {
	var x any
	err := json.Unmarshal([]byte(s), &x)
	return x, err
}

func (v JSONObject) ValidateAttribute(_ context.Context, req xattr.ValidateAttributeRequest, resp *xattr.ValidateAttributeResponse) {
	if v.IsNull() || v.IsUnknown() {
		return
	}
	if _, err := v.Object(); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid JSON object", err.Error())
	}
}
