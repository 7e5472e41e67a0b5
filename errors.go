package jwtrotor

import (
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// fieldError is a refusal of a caller's input: the field it concerns, and
// what is wrong with the value with the bound and the fix. Every check of
// input returns one, and respond turns it into a 400; any other error is
// the plugin's (or storage's) and becomes a 500.
type fieldError struct {
	Field string
	Msg   string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Msg }

// refuse returns a fieldError for field.
func refuse(field, format string, args ...any) error {
	return &fieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// isRefusal reports whether err is a refusal of the caller's input.
func isRefusal(err error) bool {
	var fe *fieldError
	return errors.As(err, &fe)
}

// respond answers a handler's error: a 400 with the message for a refusal,
// the error itself otherwise.
func respond(err error) (*logical.Response, error) {
	if isRefusal(err) {
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}
	return nil, err
}
