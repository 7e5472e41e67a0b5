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

// DurationType is the Terraform type of a duration attribute.
type DurationType struct{ basetypes.StringType }

var _ basetypes.StringTypable = DurationType{}

func (t DurationType) String() string { return "DurationType" }

func (t DurationType) Equal(o attr.Type) bool {
	_, ok := o.(DurationType)
	return ok
}

func (t DurationType) ValueType(context.Context) attr.Value { return Duration{} }

func (t DurationType) ValueFromString(_ context.Context, in basetypes.StringValue) (basetypes.StringValuable, diag.Diagnostics) {
	return Duration{StringValue: in}, nil
}

func (t DurationType) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.StringType.ValueFromTerraform(ctx, in)
	if err != nil {
		return nil, err
	}
	s, ok := v.(basetypes.StringValue)
	if !ok {
		return nil, fmt.Errorf("unexpected value type %T", v)
	}
	return Duration{StringValue: s}, nil
}

// Duration is a duration attribute's value.
type Duration struct{ basetypes.StringValue }

var (
	_ basetypes.StringValuableWithSemanticEquals = Duration{}
	_ xattr.ValidateableAttribute                = Duration{}
)

// DurationOf is the value the plugin's seconds read back as.
func DurationOf(secs int64) Duration {
	return Duration{StringValue: basetypes.NewStringValue(FormatDuration(secs))}
}

func (v Duration) Type(context.Context) attr.Type { return DurationType{} }

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
type JSONObjectType struct{ basetypes.StringType }

var _ basetypes.StringTypable = JSONObjectType{}

func (t JSONObjectType) String() string { return "JSONObjectType" }

func (t JSONObjectType) Equal(o attr.Type) bool {
	_, ok := o.(JSONObjectType)
	return ok
}

func (t JSONObjectType) ValueType(context.Context) attr.Value { return JSONObject{} }

func (t JSONObjectType) ValueFromString(_ context.Context, in basetypes.StringValue) (basetypes.StringValuable, diag.Diagnostics) {
	return JSONObject{StringValue: in}, nil
}

func (t JSONObjectType) ValueFromTerraform(ctx context.Context, in tftypes.Value) (attr.Value, error) {
	v, err := t.StringType.ValueFromTerraform(ctx, in)
	if err != nil {
		return nil, err
	}
	s, ok := v.(basetypes.StringValue)
	if !ok {
		return nil, fmt.Errorf("unexpected value type %T", v)
	}
	return JSONObject{StringValue: s}, nil
}

// JSONObject is the value of a JSON object attribute.
type JSONObject struct{ basetypes.StringValue }

var (
	_ basetypes.StringValuableWithSemanticEquals = JSONObject{}
	_ xattr.ValidateableAttribute                = JSONObject{}
)

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
