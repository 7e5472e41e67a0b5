package jwtrotor

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of errors.go: a refusal names its field and becomes a 400 with its
// message; every other error is the plugin's and passes through as a 500.

// A refusal's message starts with the field it concerns.
func TestRefusalNamesItsField(t *testing.T) {
	t.Parallel()
	err := refuse("ttl", "%ds is above %ds", 7200, 3600)
	if err.Error() != "ttl: 7200s is above 3600s" {
		t.Fatalf("message %q", err)
	}
	var fe *fieldError
	if !errors.As(err, &fe) || fe.Field != "ttl" || fe.Msg != "7200s is above 3600s" {
		t.Fatalf("field error %+v", fe)
	}
}

// A refusal is known as one even wrapped; no other error is.
func TestIsRefusal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"a refusal", refuse("kid", "bad"), true},
		{"a wrapped refusal", fmt.Errorf("ring %q: %w", "k", refuse("kid", "bad")), true},
		{"a storage error", errors.New("storage unavailable"), false},
		{"no error", nil, false},
	} {
		if got := isRefusal(c.err); got != c.want {
			t.Errorf("%s: isRefusal %v, want %v", c.name, got, c.want)
		}
	}
}

// A refusal answers a 400 with its message; any other error, a 500.
func TestRespond(t *testing.T) {
	t.Parallel()
	resp, err := respond(refuse("kid", "%q is not a key of ring %q", "x", "k"))
	if !errors.Is(err, logical.ErrInvalidRequest) || resp == nil || !resp.IsError() {
		t.Fatalf("a refusal answers %v, %v; want an error response and ErrInvalidRequest", resp, err)
	}
	if got := resp.Data["error"]; got != `kid: "x" is not a key of ring "k"` {
		t.Fatalf("error %q", got)
	}
	// Vault turns the pair into a 400.
	if code, _ := logical.RespondErrorCommon(&logical.Request{}, resp, err); code != 400 {
		t.Fatalf("status %d, want 400", code)
	}
	internal := errors.New("write ring: storage unavailable")
	resp, err = respond(internal)
	if resp != nil || err != internal {
		t.Fatalf("an internal error answers %v, %v; want no response and the error itself", resp, err)
	}
	if code, _ := logical.RespondErrorCommon(&logical.Request{}, resp, err); code != 500 {
		t.Fatalf("status %d, want 500", code)
	}
}
