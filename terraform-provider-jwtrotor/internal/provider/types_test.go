package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// Durations read back from the plugin in seconds must equal what the
// configuration wrote in any form, or every plan would show a diff.
func TestDurationRoundTrip(t *testing.T) {
	for _, c := range []struct {
		in   string
		secs int64
		out  string
	}{
		{"24h", 86400, "24h"},
		{"1440m", 86400, "24h"},
		{"86400", 86400, "24h"},
		{"1h30m", 5400, "1h30m"},
		{"90m", 5400, "1h30m"},
		{"45s", 45, "45s"},
		{"1h0m1s", 3601, "1h1s"},
		{"0s", 0, "0s"},
		{"0", 0, "0s"},
	} {
		n, err := ParseDuration(c.in)
		if err != nil || n != c.secs {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d", c.in, n, err, c.secs)
		}
		if got := FormatDuration(c.secs); got != c.out {
			t.Errorf("FormatDuration(%d) = %q, want %q", c.secs, got, c.out)
		}
		if back, _ := ParseDuration(FormatDuration(c.secs)); back != c.secs {
			t.Errorf("FormatDuration(%d) parses back as %d", c.secs, back)
		}
		written := Duration{StringValue: basetypes.NewStringValue(c.in)}
		if eq, _ := written.StringSemanticEquals(context.Background(), DurationOf(c.secs)); !eq {
			t.Errorf("%q is not semantically equal to %d seconds read back", c.in, c.secs)
		}
	}
	for _, bad := range []string{"", "1 day", "1d", "-5s", "-5", "1500ms", "1.5s", "h"} {
		if n, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %d, want an error", bad, n)
		}
	}
	a := Duration{StringValue: basetypes.NewStringValue("1h")}
	if eq, _ := a.StringSemanticEquals(context.Background(), DurationOf(3601)); eq {
		t.Error("1h is semantically equal to 3601 seconds")
	}
}

// A JSON object written with jsonencode equals the plugin's re-encoding of
// it, whatever the member order, spacing or number form.
func TestJSONObjectSemanticEquality(t *testing.T) {
	v := func(s string) JSONObject { return JSONObject{StringValue: basetypes.NewStringValue(s)} }
	read, err := JSONObjectOf(map[string]any{"tier": "gold", "limits": map[string]any{"rps": 10.0}})
	if err != nil {
		t.Fatal(err)
	}
	for _, written := range []string{`{"tier":"gold","limits":{"rps":10}}`, `{ "limits": { "rps": 10.0 }, "tier": "gold" }`} {
		if eq, _ := v(written).StringSemanticEquals(context.Background(), read); !eq {
			t.Errorf("%s differs from %s", written, read.ValueString())
		}
	}
	for _, other := range []string{`{"tier":"gold"}`, `{"tier":"gold","limits":{"rps":11}}`, `[]`} {
		if eq, _ := v(other).StringSemanticEquals(context.Background(), read); eq {
			t.Errorf("%s equals %s", other, read.ValueString())
		}
	}
	for _, bad := range []string{`[1,2]`, `"x"`, `null`, `{"a":1} {"b":2}`, `{`} {
		if _, err := v(bad).Object(); err == nil {
			t.Errorf("%s accepted as a JSON object", bad)
		}
	}
}

// A configured value arrives through the attribute's type: each type must
// make its own value (or semantic equality and validation never run) and
// tell itself apart from the other.
func TestCustomStringTypes(t *testing.T) {
	ctx := context.Background()
	d, err := DurationType{}.ValueFromTerraform(ctx, tftypes.NewValue(tftypes.String, "24h"))
	if dv, ok := d.(Duration); !ok || err != nil || dv.ValueString() != "24h" {
		t.Errorf("DurationType made %T %v (%v), want Duration 24h", d, d, err)
	}
	j, err := JSONObjectType{}.ValueFromTerraform(ctx, tftypes.NewValue(tftypes.String, `{}`))
	if _, ok := j.(JSONObject); !ok || err != nil {
		t.Errorf("JSONObjectType made %T (%v), want JSONObject", j, err)
	}
	if _, ok := (DurationType{}).ValueType(ctx).(Duration); !ok {
		t.Errorf("DurationType's value type is %T", DurationType{}.ValueType(ctx))
	}
	dt, jt := DurationType{}, JSONObjectType{}
	if dt.Equal(jt) || !dt.Equal(Duration{}.Type(ctx)) {
		t.Error("DurationType equals JSONObjectType, or not itself")
	}
	if dt.String() != "DurationType" || jt.String() != "JSONObjectType" {
		t.Errorf("type names %q and %q", dt.String(), jt.String())
	}
}
