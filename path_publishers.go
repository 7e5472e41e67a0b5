package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathPublishers(b *backend) []*framework.Path {
	secret := &framework.DisplayAttributes{Sensitive: true}
	return []*framework.Path{
		b.listPath("publishers", "publishers", "Publisher names.", func(snap *snapshot) []string { return slices.Sorted(maps.Keys(snap.publishers)) }),
		{
			Pattern: "publishers/" + framework.GenericNameRegex("name") + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "publisher",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": {Type: framework.TypeLowerCaseString, Description: "Name of the publisher.", Required: true},
				"type": {
					Type:        framework.TypeString,
					Description: "s3 (AWS S3 or an S3-compatible store), webdav (HTTP PUT to a base URL), azure_blob (an Azure Blob Storage container) or gcs (Google Cloud Storage). Required on create; fixed after.",
				},
				"bucket": {
					Type:        framework.TypeString,
					Description: "type=s3 and type=gcs: the bucket's name. Required.",
				},
				"region": {
					Type:        framework.TypeString,
					Description: "type=s3: the bucket's region, such as eu-west-1. Required.",
				},
				"endpoint": {
					Type:        framework.TypeString,
					Description: "type=s3: the store's URL, for an S3-compatible store; empty for AWS. type=gcs: the store's base URL (the JSON API is under /storage/v1/), for a private endpoint or an emulator; empty for Cloud Storage. https, or http on a loopback address.",
				},
				"path_style": {
					Type:        framework.TypeBool,
					Default:     false,
					Description: "type=s3: address the bucket in the path (endpoint/bucket/key) rather than in the host name.",
				},
				"access_key_id": {
					Type:         framework.TypeString,
					Description:  "type=s3: access key id. Write-only; give it with secret_access_key, or neither to use ambient credentials where config allows them; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"secret_access_key": {
					Type:         framework.TypeString,
					Description:  "type=s3: secret access key. Write-only; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"session_token": {
					Type:         framework.TypeString,
					Description:  "type=s3: session token of temporary credentials. Write-only; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"url": {
					Type:        framework.TypeString,
					Description: "type=webdav: the base URL, ending with a slash, that objects are PUT under. Required. https, or http on a loopback address.",
				},
				"username": {
					Type:         framework.TypeString,
					Description:  "type=webdav: user for HTTP Basic authentication. Write-only; give it with password; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"password": {
					Type:         framework.TypeString,
					Description:  "type=webdav: password for HTTP Basic authentication. Write-only; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"account_url": {
					Type:        framework.TypeString,
					Description: "type=azure_blob: the storage account's Blob service URL, such as https://<account>.blob.core.windows.net. Required. https, or http on a loopback address.",
				},
				"container": {
					Type:        framework.TypeString,
					Description: "type=azure_blob: the container's name ($web allowed). Required.",
				},
				"account_name": {
					Type:        framework.TypeString,
					Description: "type=azure_blob: the storage account's name, for a shared key; give it with account_key.",
				},
				"account_key": {
					Type:         framework.TypeString,
					Description:  "type=azure_blob: the storage account's access key (shared key). Write-only; give it with account_name, or give sas_token instead; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"sas_token": {
					Type:         framework.TypeString,
					Description:  "type=azure_blob: a SAS token (the query string of a shared access signature) allowing reads and writes of the container's blobs. Write-only; \"\" clears it.",
					DisplayAttrs: secret,
				},
				"credentials_json": {
					Type:         framework.TypeString,
					Description:  "type=gcs: a service account key (the JSON key file's content). Write-only; leave it out to use ambient credentials where config allows them (application default credentials, or none for a loopback endpoint); \"\" clears it.",
					DisplayAttrs: secret,
				},
				"prefix": {
					Type:        framework.TypeString,
					Description: "Prepended to every object name; empty or ending with a slash, such as tenant-a/.",
				},
				"jwks_path": {
					Type:        framework.TypeString,
					Default:     defaultJWKSObject,
					Description: "Where the JWKS is written, under prefix.",
				},
				"ring": {
					Type:        framework.TypeString,
					Description: "Publish this ring's JWKS (jwks/<ring>) instead of the mount's. Empty: the mount's.",
				},
				"public_url": {
					Type:        framework.TypeString,
					Description: "Where verifiers read the copies: the URL of prefix, ending with a slash. When it is the issuer plus a slash, the discovery document is written too. https, or http on a loopback address; no user info, query or fragment.",
				},
				"required": {
					Type:        framework.TypeBool,
					Default:     false,
					Description: "Whether a key's activation waits (on rings with max_activation_delay above 0) until this publisher's acknowledged copy holds it.",
				},
				"profile": {
					Type:          framework.TypeString,
					Default:       profileGeneric,
					AllowedValues: []any{"generic", "aws", "gcp", "azure"},
					Description:   "The verifier the copy is for: generic (anything the plugin serves), aws (IAM OIDC providers: RS256/384/512 and ES256/384/512, at most 100 keys of each type, an https issuer without port or query), gcp (Workload Identity Federation: RSA and EC keys) or azure (Entra federated credentials: RS256 only). A ring, or a later change to it, that the profile cannot carry is refused.",
				},
			},
			ExistenceCheck: objectExists(b, publishersOf),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   op(objectRead(b, publishersOf, publisherData), "read", "publisher", "Read a publisher (its credentials are never returned).", publisherAnswer),
				logical.CreateOperation: writeOp(b.pathPublisherWrite, "write", "publisher", "Create a publisher, or change it.", nil),
				logical.UpdateOperation: writeOp(b.pathPublisherWrite, "write", "publisher", "Create a publisher, or change it.", nil),
				logical.DeleteOperation: writeOp(b.pathPublisherDelete, "delete", "publisher", "Delete a publisher.", nil),
			},
			HelpSynopsis:    pathPublishersHelpSyn,
			HelpDescription: pathPublishersHelpDesc,
		},
	}
}

// publisherAnswer is what a publisher read answers: every field a write
// accepts except the credentials, of which it says only whether each is
// set. The fields of the other type are left out.
var publisherAnswer = map[string]*framework.FieldSchema{
	"type":                  {Type: framework.TypeString, Description: "s3, webdav, azure_blob or gcs.", Required: true},
	"bucket":                {Type: framework.TypeString, Description: "type=s3 and type=gcs: the bucket."},
	"region":                {Type: framework.TypeString, Description: "type=s3: the bucket's region."},
	"endpoint":              {Type: framework.TypeString, Description: "type=s3 and type=gcs: the store's URL (\"\": AWS, or Cloud Storage)."},
	"path_style":            {Type: framework.TypeBool, Description: "type=s3: path-style addressing."},
	"access_key_id_set":     {Type: framework.TypeBool, Description: "type=s3: whether an access key id is stored."},
	"secret_access_key_set": {Type: framework.TypeBool, Description: "type=s3: whether a secret access key is stored."},
	"session_token_set":     {Type: framework.TypeBool, Description: "type=s3: whether a session token is stored."},
	"url":                   {Type: framework.TypeString, Description: "type=webdav: the base URL."},
	"username_set":          {Type: framework.TypeBool, Description: "type=webdav: whether a user name is stored."},
	"password_set":          {Type: framework.TypeBool, Description: "type=webdav: whether a password is stored."},
	"account_url":           {Type: framework.TypeString, Description: "type=azure_blob: the Blob service URL."},
	"container":             {Type: framework.TypeString, Description: "type=azure_blob: the container."},
	"account_name":          {Type: framework.TypeString, Description: "type=azure_blob: the storage account's name (\"\": no shared key)."},
	"account_key_set":       {Type: framework.TypeBool, Description: "type=azure_blob: whether an account key is stored."},
	"sas_token_set":         {Type: framework.TypeBool, Description: "type=azure_blob: whether a SAS token is stored."},
	"credentials_json_set":  {Type: framework.TypeBool, Description: "type=gcs: whether a service account key is stored."},
	"ambient_credentials":   {Type: framework.TypeBool, Description: "Whether the publisher has no credentials of its own, and would act with the plugin process's.", Required: true},
	"prefix":                {Type: framework.TypeString, Description: "Prepended to every object name.", Required: true},
	"jwks_path":             {Type: framework.TypeString, Description: "Where the JWKS is written, under prefix.", Required: true},
	"ring":                  {Type: framework.TypeString, Description: "The ring whose JWKS is published (\"\": the mount's).", Required: true},
	"public_url":            {Type: framework.TypeString, Description: "Where verifiers read the copies (\"\": not given).", Required: true},
	"required":              {Type: framework.TypeBool, Description: "Whether a key's activation waits for this publisher.", Required: true},
	"profile":               {Type: framework.TypeString, Description: "The verifier the copy is for: generic, aws, gcp or azure.", Required: true},
}

// publisherData is the one place a publisher becomes a response: the
// credentials appear only as <field>_set.
func publisherData(p *publisherEntry) map[string]any {
	d := map[string]any{
		"type":                p.Type,
		"ambient_credentials": p.ambient(),
		"prefix":              p.Prefix,
		"jwks_path":           p.JWKSPath,
		"ring":                p.Ring,
		"public_url":          p.PublicURL,
		"required":            p.Required,
		"profile":             profileOf(p).name,
	}
	switch p.Type {
	case publisherS3:
		d["bucket"], d["region"], d["endpoint"], d["path_style"] = p.Bucket, p.Region, p.Endpoint, p.PathStyle
	case publisherAzure:
		d["account_url"], d["container"], d["account_name"] = p.AccountURL, p.Container, p.AccountName
	case publisherGCS:
		d["bucket"], d["endpoint"] = p.Bucket, p.Endpoint
	default:
		d["url"] = p.URL
	}
	for _, f := range publisherCredentials {
		if publisherFieldTypes[f] == p.Type {
			d[f+"_set"] = p.credential(f) != ""
		}
	}
	return d
}

func publishersOf(snap *snapshot) map[string]*publisherEntry { return snap.publishers }

func (b *backend) pathPublisherWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	var given []string
	for f := range req.Data {
		if f != "name" {
			given = append(given, f)
		}
	}
	sort.Strings(given)
	p := &publisherEntry{JWKSPath: defaultJWKSObject}
	old := snap.publishers[name]
	if old != nil {
		c := *old
		p = &c
	} else if len(snap.publishers) >= maxPublishers {
		return respond(refuse("name", "this mount has %d publishers, the limit; delete one first (each publisher is written to on every change of the key set)", len(snap.publishers)))
	}
	p.Version = schemaVersion
	if v, ok := d.GetOk("type"); ok {
		if old != nil && v.(string) != old.Type {
			return respond(refuse("type", "publisher %q is type=%s, and a type cannot change (the other type's fields and credentials mean nothing to it); delete it and create it again", name, old.Type))
		}
		p.Type = v.(string)
	}
	if err := checkPublisherType(p.Type, given); err != nil {
		return respond(err)
	}
	strs := map[string]*string{
		"bucket": &p.Bucket, "region": &p.Region, "endpoint": &p.Endpoint,
		"access_key_id": &p.AccessKeyID, "secret_access_key": &p.SecretAccessKey, "session_token": &p.SessionToken,
		"url": &p.URL, "username": &p.Username, "password": &p.Password,
		"account_url": &p.AccountURL, "container": &p.Container, "account_name": &p.AccountName,
		"account_key": &p.AccountKey, "sas_token": &p.SASToken,
		"prefix": &p.Prefix, "jwks_path": &p.JWKSPath, "ring": &p.Ring, "public_url": &p.PublicURL,
		"credentials_json": &p.CredentialsJSON, "profile": &p.Profile,
	}
	for f, dst := range strs {
		if v, ok := d.GetOk(f); ok {
			*dst = v.(string)
		}
	}
	if v, ok := d.GetOk("path_style"); ok {
		p.PathStyle = v.(bool)
	}
	if v, ok := d.GetOk("required"); ok {
		p.Required = v.(bool)
	}
	if err := checkPublisher(p, snap.rings, snap.config.PublishersAllowAmbientCredentials); err != nil {
		return respond(err)
	}
	if _, ok := req.Data["profile"]; ok {
		if err := checkProfileName(p.Profile); err != nil {
			return respond(err)
		}
	}
	if err := checkProfiles(map[string]*publisherEntry{name: p}, snap.rings, snap.config.Issuer, b.clock.read().Schedule, "profile"); err != nil {
		return respond(err)
	}
	if err := putJSON(ctx, req.Storage, publisherPrefix+name, p); err != nil {
		return nil, err
	}
	b.cachePublisher(name, p)
	verb := "created"
	if old != nil {
		verb = "changed"
	}
	b.log().Info("publisher "+verb, "publisher", name, "type", p.Type, "fields", fmt.Sprint(given))
	return nil, nil
}

func (b *backend) pathPublisherDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	if err := req.Storage.Delete(ctx, publisherPrefix+name); err != nil {
		return nil, fmt.Errorf("delete publisher %q: %w", name, err)
	}
	b.cachePublisher(name, nil)
	if err := b.deletePublisherState(ctx, req.Storage, name); err != nil {
		return nil, fmt.Errorf("delete the state of publisher %q: %w", name, err)
	}
	b.log().Info("publisher deleted", "publisher", name)
	return nil, nil
}

const pathPublishersHelpSyn = `Manage a publisher: an S3 bucket, WebDAV server, Azure Blob container or Cloud Storage bucket that holds copies of the JWKS.`

var pathPublishersHelpDesc = fmt.Sprintf(`
A publisher names a place outside Vault where verifiers that cannot reach
Vault read the key set: an S3 bucket (type=s3: bucket, region, and
endpoint and path_style for an S3-compatible store), a WebDAV base URL
(type=webdav: url), an Azure Blob Storage container (type=azure_blob:
account_url, container) or a Google Cloud Storage bucket (type=gcs:
bucket, and endpoint for a private endpoint or an emulator). The JWKS is
written at <prefix><jwks_path>
(jwks_path defaults to %s) and, when public_url is the issuer plus a slash,
the discovery document at <prefix>%s. ring publishes one ring's JWKS
instead of the mount's; required makes a key's activation wait (on rings
with max_activation_delay above 0) until this publisher's copy holds it.

The active node uploads a change of the key set within seconds, retries a
failed upload, writes the copy again every minute (restoring one deleted or
changed outside Vault), and reads each copy back; vault read verifiers shows
each publisher's state (docs/publishing.md).

Credentials (access_key_id, secret_access_key, session_token; username,
password; account_key, sas_token; credentials_json) are write-only: a
read says only whether each is set, and an update that gives one replaces
it ("" clears it). A publisher without credentials would act with the
plugin process's own (the environment, the instance's cloud role; for
gcs, the application default credentials, or no authentication at all
when endpoint is a loopback address), which only a writer of config may
allow (publishers_allow_ambient_credentials); an azure_blob publisher
always needs account_name and account_key, or sas_token.

endpoint, url, account_url and public_url must be https, except on a loopback address,
and may not carry user info, a query or a fragment; link-local and cloud
metadata addresses are refused. A host name is checked when it is
connected to.
`, defaultJWKSObject, discoveryObject)
