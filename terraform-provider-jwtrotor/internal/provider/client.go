package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/vault/api"
)

// vaultClient talks to one mount of the plugin.
type vaultClient struct {
	api   *api.Client
	mount string
}

// p is the Vault path of rel under the mount.
func (c *vaultClient) p(rel string) string { return c.mount + "/" + rel }

// read returns the data at rel, or nil when there is nothing there.
func (c *vaultClient) read(ctx context.Context, rel string) (*api.Secret, error) {
	s, err := c.api.Logical().ReadWithContext(ctx, c.p(rel))
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	return s, nil
}

// write sends data, which holds only the fields the configuration sets:
// the plugin refuses unknown fields and nulls, so an unset attribute is
// left out, never sent as null.
func (c *vaultClient) write(ctx context.Context, rel string, data map[string]any) (*api.Secret, error) {
	return c.api.Logical().WriteWithContext(ctx, c.p(rel), data)
}

// writeOnce is write without the client's retries, for an operation that
// the plugin cannot make idempotent.
func (c *vaultClient) writeOnce(ctx context.Context, rel string, data map[string]any) (*api.Secret, error) {
	once, err := c.api.Clone()
	if err != nil {
		return nil, err
	}
	once.SetToken(c.api.Token())
	once.SetNamespace(c.api.Namespace())
	once.SetMaxRetries(0)
	return once.Logical().WriteWithContext(ctx, c.p(rel), data)
}

// send writes body to rel for a resource declared by table: a refusal is
// reported on the attribute the plugin's message names, and the plugin's
// warnings are passed on. ok is false when Vault refused.
func (c *vaultClient) send(ctx context.Context, rel string, body map[string]any, table fields, diags *diag.Diagnostics) (s *api.Secret, ok bool) {
	s, err := c.write(ctx, rel, body)
	if err != nil {
		addVaultError(diags, "Vault refused the write to "+c.p(rel), err, table.names())
		return nil, false
	}
	addWarnings(diags, "Warning from "+c.p(rel), s)
	return s, true
}

// readRing reads key ring name; when Vault has none, the error is on
// attribute attr, which names the ring. It is nil after any error.
func (c *vaultClient) readRing(ctx context.Context, attr, name string, diags *diag.Diagnostics) *api.Secret {
	rel := "keys/" + name
	s, err := c.read(ctx, rel)
	if err != nil {
		addVaultError(diags, "Reading "+c.p(rel), err, nil)
		return nil
	}
	if s == nil {
		diags.AddAttributeError(path.Root(attr), "No such key ring", fmt.Sprintf("%s: no key ring %q at %s", attr, name, c.p(rel)))
	}
	return s
}

func (c *vaultClient) delete(ctx context.Context, rel string, query map[string][]string) (*api.Secret, error) {
	return c.api.Logical().DeleteWithDataWithContext(ctx, c.p(rel), query)
}

// readDocument returns the body of an unauthenticated document of the
// mount (the JWKS or the discovery document) as served to verifiers.
func (c *vaultClient) readDocument(ctx context.Context, rel string) ([]byte, error) {
	resp, err := c.api.Logical().ReadRawWithContext(ctx, c.p(rel))
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	return io.ReadAll(resp.Body)
}

// fieldsOf lists the attribute names a plugin message may start with.
type fieldsOf map[string]bool

// addVaultError reports a refused or failed request. The plugin's message
// is kept verbatim (it names the field, the bound and the fix); when it
// starts with "<field>: " and field is an attribute of the resource, the
// diagnostic points at that attribute.
func addVaultError(diags *diag.Diagnostics, summary string, err error, attrs fieldsOf) {
	var re *api.ResponseError
	if !errors.As(err, &re) || len(re.Errors) == 0 {
		diags.AddError(summary, err.Error())
		return
	}
	for _, msg := range re.Errors {
		if field, _, ok := strings.Cut(msg, ": "); ok && attrs[field] {
			diags.AddAttributeError(path.Root(field), summary, msg)
			continue
		}
		diags.AddError(summary, fmt.Sprintf("%s (HTTP %d from %s)", msg, re.StatusCode, redactURL(re.URL)))
	}
}

// addWarnings passes the plugin's warnings on, verbatim.
func addWarnings(diags *diag.Diagnostics, summary string, s *api.Secret) {
	if s == nil {
		return
	}
	for _, w := range s.Warnings {
		diags.AddWarning(summary, w)
	}
}

func redactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.RawQuery = ""
	return parsed.String()
}
