package jwtrotor

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// tokenPrefix is the path of the read that mints.
const tokenPrefix = "token/"

// tokenQuery is what a read of token/<role> accepts as query parameters,
// checked as sign checks the fields of the same names. Claims and subject
// stay on sign: a read carries no body, and a template has no place for them.
var tokenQuery = &framework.Path{Fields: map[string]*framework.FieldSchema{
	"audience": signFields["audience"],
	"ttl":      signFields["ttl"],
}}

func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: strings.TrimSuffix(tokenPrefix, "/") + "/" + framework.GenericNameRegex("role") + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"role": {Type: framework.TypeLowerCaseString, Description: "Role to mint under; its allow_token_read must be true.", Required: true},
			// A string here, though checked as sign's list: Vault's
			// OpenAPI generator gives a list query parameter no item
			// type, which makes the document invalid.
			"audience": {Type: framework.TypeString, Description: "Query parameter: one or more of the role's audiences, comma-separated. Default: all of them.", Query: true},
			"ttl":      {Type: framework.TypeDurationSecond, Description: "Query parameter: token lifetime, at most the role's max_ttl. Default: the role's ttl.", Query: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			// Not forwarded: like sign, minting writes no storage, so the
			// node that receives the read can answer it.
			logical.ReadOperation: op(b.pathToken, "mint", "token", "Mint a JWT under a role with its defaults, for roles with allow_token_read.", tokenAnswer),
		},
		HelpSynopsis:    pathTokenHelpSyn,
		HelpDescription: pathTokenHelpDesc,
	}
}

// checkTokenQuery refuses query parameters a read of token/<role> does not
// take (a typo such as tll, or claims, which only sign accepts) and values
// sign would refuse, before the framework sees the request.
func checkTokenQuery(req *logical.Request) error {
	if req.Operation != logical.ReadOperation || !strings.HasPrefix(req.Path, tokenPrefix) {
		return nil
	}
	if err := checkFields(tokenQuery, req); err != nil {
		return err
	}
	// The checked list goes on as the comma-separated string the path
	// declares (a repeated ?audience= arrives as a list too).
	if aud, ok := req.Data["audience"].([]string); ok {
		req.Data["audience"] = strings.Join(aud, ",")
	}
	return nil
}

func (b *backend) pathToken(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName := d.Get("role").(string)
	s, err := b.newSigner(ctx, req, roleName)
	if err != nil {
		return respond(err)
	}
	if !s.role.AllowTokenRead {
		return respond(refuse("allow_token_read", "role %q does not mint on a read; enable it with vault write %sroles/%s allow_token_read=true (then read capability on %s%s%s means may mint), or sign with vault write %ssign/%s",
			roleName, req.MountPoint, roleName, req.MountPoint, tokenPrefix, roleName, req.MountPoint, roleName))
	}
	sr := &signRequest{}
	if v := d.Get("audience").(string); v != "" {
		sr.audience = strings.Split(v, ",")
	}
	if v, ok := d.GetOk("ttl"); ok {
		sr.ttl, sr.ttlSet = int64(v.(int)), true
	}
	return s.signOne(sr)
}

const pathTokenHelpSyn = `Mint a JWT under a role with a read.`

const pathTokenHelpDesc = `
A read of token/<role> issues a token exactly as sign/<role> with no fields
would: the same checks, claims, subject, lifetime and key, answered with the
same fields (token, kid, jti, issued_at, expires_at). It is for Vault Agent
templates and other clients that only read, such as

  {{ with secret "jwt/token/<role>" }}{{ .Data.token }}{{ end }}

The query parameters audience and ttl are checked as sign checks them
(?audience=api&ttl=10m); any other parameter is refused. Caller claims and
subject stay on sign.

The role must have allow_token_read=true; it is false by default, because a
read that mints changes what read policies grant: read capability on
token/<role> means may mint. Each read mints a new token, so render it no
less often than the token's ttl allows (see docs/workloads.md).
`
