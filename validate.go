package jwtrotor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/parseutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// maxStringLen and maxListLen bound every string and list field, so no
// write can store or sign a huge value (comma-separated lists arrive as one
// string and escape Vault's own JSON limits).
const (
	maxStringLen = 4096
	maxListLen   = 256
)

// durationDefault writes a duration field's default as the string the
// OpenAPI document declares durations to be ("900s"); the framework parses
// it like any duration.
func durationDefault(seconds int64) string {
	return strconv.FormatInt(seconds, 10) + "s"
}

// maxDurationSeconds bounds every duration field: ten years is longer than any
// sensible rotation, and keeps timestamp arithmetic far from overflow.
const maxDurationSeconds = int64(10 * 365 * 24 * 3600)

// checkFields refuses unknown fields and values of the wrong type with a
// message that names the field and says what to send instead. A JSON object
// given as a string (as `vault write ... claims='{"a":1}'` sends it) is
// decoded in place, so both spellings reach the handler as an object.
func checkFields(p *framework.Path, req *logical.Request) error {
	var unknown []string
	for k := range req.Data {
		if _, ok := p.Fields[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		known := make([]string, 0, len(p.Fields))
		for k := range p.Fields {
			known = append(known, k)
		}
		sort.Strings(known)
		return refuse(strings.Join(unknown, ", "), "unknown field; this path accepts %s; check the spelling (nothing was stored)", strings.Join(known, ", "))
	}
	for name, raw := range req.Data {
		schema := p.Fields[name]
		if raw == nil {
			return nullRefusal(name, schema.Type, storesObject(p))
		}
		v, err := checkValue(name, schema.Type, raw)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				fe.Msg += " (nothing was stored)"
			}
			return err
		}
		if v != nil {
			req.Data[name] = v
		}
	}
	return nil
}

// storesObject reports whether writes to p store an object whose fields
// persist (config, keys/<name>, roles/<name>), where a field may be cleared.
func storesObject(p *framework.Path) bool {
	return p.ExistenceCheck != nil || strings.Trim(p.Pattern, "^$") == "config"
}

// notClearable are the list fields of stored objects that may never be
// empty, with the reason.
var notClearable = map[string]string{
	"audiences": "a role needs at least one audience",
}

// nullRefusal refuses a JSON null. Clients send null for "not set", and
// meant it three ways (keep, clear, default); the plugin guesses none of
// them: leaving the field out keeps it, and an explicit empty value clears
// it where clearing makes sense.
func nullRefusal(name string, t framework.FieldType, stored bool) error {
	msg := "null is not a value, and nothing was stored; leave the field out to keep "
	if stored {
		msg += "its current value"
	} else {
		msg += "its default"
	}
	switch {
	case !stored:
	case notClearable[name] != "":
		return refuse(name, "%s (it cannot be cleared: %s)", msg, notClearable[name])
	case t == framework.TypeMap:
		return refuse(name, "%s, or send an empty object to clear it (%s={})", msg, name)
	case t == framework.TypeCommaStringSlice || t == framework.TypeStringSlice:
		return refuse(name, "%s, or send an empty list to clear it (%s=[])", msg, name)
	}
	return refuse(name, "%s, or give a value", msg)
}

// checkValue returns a replacement value (or nil to keep raw), or a
// refusal naming the field.
func checkValue(name string, t framework.FieldType, raw any) (any, error) {
	if raw == nil {
		return nil, nullRefusal(name, t, false)
	}
	switch t {
	case framework.TypeDurationSecond:
		secs, err := parseDuration(raw)
		if err != nil {
			return nil, refuse(name, "%v; give whole seconds (3600) or a duration such as \"1h\" or \"90s\"", err)
		}
		return secs, nil
	case framework.TypeBool:
		switch v := raw.(type) {
		case bool:
			return nil, nil
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, refuse(name, "%q is not a boolean; give true or false", v)
			}
			return b, nil
		}
		return nil, refuse(name, "expected true or false, got %s", typeName(raw))
	case framework.TypeInt:
		n, err := parseInt(raw)
		if err != nil {
			return nil, refuse(name, "%v; give a whole number", err)
		}
		return n, nil
	case framework.TypeString, framework.TypeNameString, framework.TypeLowerCaseString:
		switch v := raw.(type) {
		case string:
			if !utf8.ValidString(v) {
				return nil, refuse(name, "not valid UTF-8; send text")
			}
			if len(v) > maxStringLen {
				return nil, refuse(name, "%d bytes is longer than the %d-byte limit; send a shorter value", len(v), maxStringLen)
			}
			return nil, nil
		case json.Number:
			return v.String(), nil
		}
		return nil, refuse(name, "expected a string, got %s", typeName(raw))
	case framework.TypeFloat:
		switch v := raw.(type) {
		case float64, int, int64:
			return nil, nil
		case json.Number:
			f, err := v.Float64()
			if err != nil {
				return nil, refuse(name, "%q is not a number", v.String())
			}
			return f, nil
		case string:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, refuse(name, "%q is not a number", v)
			}
			return f, nil
		}
		return nil, refuse(name, "expected a number, got %s", typeName(raw))
	case framework.TypeCommaStringSlice, framework.TypeStringSlice:
		list, err := stringList(name, raw)
		if err != nil {
			return nil, err
		}
		return list, nil
	case framework.TypeMap:
		switch v := raw.(type) {
		case map[string]any:
			return nil, nil
		case string:
			m, err := decodeObject(v)
			if err != nil {
				return nil, refuse(name, "%v; give a JSON object such as {\"scope\":\"read\"}", err)
			}
			return m, nil
		}
		return nil, refuse(name, "expected a JSON object, got %s; give an object such as {\"scope\":\"read\"}", typeName(raw))
	case framework.TypeSlice:
		switch v := raw.(type) {
		case []any:
			return nil, nil
		case string:
			var l []any
			if err := decodeStrict(v, &l); err != nil {
				return nil, refuse(name, "%v; give a JSON list of objects", err)
			}
			return l, nil
		}
		return nil, refuse(name, "expected a list, got %s", typeName(raw))
	}
	return nil, nil
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func parseDuration(raw any) (int64, error) {
	var secs int64
	switch v := raw.(type) {
	case string:
		v = strings.TrimSpace(v)
		if v == "" {
			return 0, fmt.Errorf("empty duration")
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			secs = n
			break
		}
		d, err := parseutil.ParseDurationSecond(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration", v)
		}
		if d%time.Second != 0 {
			return 0, fmt.Errorf("%q is not a whole number of seconds", v)
		}
		secs = int64(d / time.Second)
		if strings.HasPrefix(v, "-") {
			secs = -1
		}
	default:
		n, err := parseInt(raw)
		if err != nil {
			return 0, err
		}
		secs = n
	}
	if secs < 0 {
		return 0, fmt.Errorf("negative duration")
	}
	if secs > maxDurationSeconds {
		return 0, fmt.Errorf("%d seconds is longer than the ten-year limit", secs)
	}
	return secs, nil
}

func parseInt(raw any) (int64, error) {
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, fmt.Errorf("%v is not a whole number", v)
		}
		return int64(v), nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", v.String())
		}
		return n, nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("expected a number, got %s", typeName(raw))
}

func stringList(name string, raw any) ([]string, error) {
	var out []string
	switch v := raw.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return []string{}, nil
		}
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
	case []string:
		out = append(out, v...)
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, refuse(name, "every entry must be a string, got %s", typeName(e))
			}
			out = append(out, s)
		}
	default:
		return nil, refuse(name, "expected a list of strings, got %s", typeName(raw))
	}
	if len(out) > maxListLen {
		return nil, refuse(name, "%d entries is above the limit of %d; send fewer", len(out), maxListLen)
	}
	for _, s := range out {
		if !utf8.ValidString(s) {
			return nil, refuse(name, "an entry is not valid UTF-8")
		}
		if len(s) > maxStringLen {
			return nil, refuse(name, "an entry of %d bytes is longer than the %d-byte limit", len(s), maxStringLen)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// decodeObject decodes a JSON object, refusing trailing data and duplicate
// member names (which JSON parsers resolve differently, a classic way to
// smuggle a claim past a check).
func decodeObject(s string) (map[string]any, error) {
	var m map[string]any
	if err := decodeStrict(s, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

func decodeStrict(s string, out any) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	if err := checkDuplicateNames(s); err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	// More() is false before a stray } or ]: only the end of input will do.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("invalid JSON: trailing data after the value")
	}
	return nil
}

// checkDuplicateNames walks the JSON tokens and refuses an object that
// names a member twice.
func checkDuplicateNames(s string) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	type frame struct {
		obj    bool
		names  map[string]bool
		expect bool // next string token is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // syntax errors are reported by the real decode
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.obj {
					top.expect = true
				}
				stack = append(stack, &frame{obj: true, names: map[string]bool{}, expect: true})
				continue
			case '[':
				if top != nil && top.obj {
					top.expect = true
				}
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return nil
				}
				continue
			}
		case string:
			if top != nil && top.obj && top.expect {
				if top.names[t] {
					return fmt.Errorf("member %q appears twice", t)
				}
				top.names[t] = true
				top.expect = false
				continue
			}
		}
		if top != nil && top.obj {
			top.expect = true
		}
	}
}
