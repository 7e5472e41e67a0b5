package jwtrotor

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// s3Sink is a publisher's bucket, through the AWS SDK: AWS S3 or an
// S3-compatible store at endpoint.
type s3Sink struct {
	client *s3.Client
	bucket string
}

// newS3Sink builds the S3 client of a publisher. The outbound client c
// carries the S3 API calls only: with ambient credentials the SDK's
// default chain keeps its own HTTP client, because the chain may need the
// instance metadata address, which c refuses by design.
func newS3Sink(p *publisherEntry, c *http.Client) (*s3Sink, error) {
	var cfg aws.Config
	if p.AccessKeyID != "" {
		cfg = aws.Config{
			Region:      p.Region,
			Credentials: credentials.NewStaticCredentialsProvider(p.AccessKeyID, p.SecretAccessKey, p.SessionToken),
		}
	} else {
		// Reading the environment and the shared files; credentials are
		// fetched at the first call, bounded by its context.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		cfg, err = config.LoadDefaultConfig(ctx, config.WithRegion(p.Region))
		if err != nil {
			// The SDK's error may quote shared files; only its kind is kept.
			return nil, errors.New("the AWS SDK's default configuration could not be loaded")
		}
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.HTTPClient = c
		o.UsePathStyle = p.PathStyle
		if p.Endpoint != "" {
			o.BaseEndpoint = aws.String(p.Endpoint)
		}
		// The upload code retries on its own schedule: one retry here,
		// for a dropped connection, and every attempt within the
		// caller's context.
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.MaxBackoff = time.Second
		})
		// Checksums only where the API requires them: S3-compatible
		// stores differ in which of the newer checksum headers they take.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &s3Sink{client: client, bucket: p.Bucket}, nil
}

// put is a conditional PutObject: S3 answers 412 when If-None-Match: *
// meets an existing object or If-Match another ETag. The S3-compatible
// store the acceptance tests run (versitygw v1.8.0, posix backend)
// evaluates both headers on PutObject under its per-object lock, and the
// tests check that it does.
func (s *s3Sink) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(name),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/json"),
		CacheControl:  aws.String(cacheControl),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		se := s3Error("put", name, err)
		// S3 answers If-Match on a missing object with 404 NoSuchKey: the
		// object is not the one expected. A missing bucket stays missing.
		var api smithy.APIError
		hasAPI := errors.As(err, &api)
		if ifMatch != "" && se.Status == http.StatusNotFound && !(hasAPI && api.ErrorCode() == "NoSuchBucket") {
			se.Reason = reasonPrecondition
		}
		// AWS answers 409 ConditionalRequestConflict when another
		// conditional write to the object raced this one: the object is
		// not the one expected either.
		if se.Status == http.StatusConflict && hasAPI && api.ErrorCode() == "ConditionalRequestConflict" {
			se.Reason = reasonPrecondition
		}
		return "", se
	}
	if out.ETag == nil || *out.ETag == "" {
		return "", &sinkError{Op: "put", Object: name, Reason: reasonGarbage}
	}
	return *out.ETag, nil
}

func (s *s3Sink) get(ctx context.Context, name string) ([]byte, string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		return nil, "", s3Error("get", name, err)
	}
	defer drain(out.Body)
	body, err := readCapped("get", name, out.Body)
	if err != nil {
		return nil, "", err
	}
	return body, aws.ToString(out.ETag), nil
}

// s3Error maps an SDK error by the HTTP status it carries, or as a
// transport error when it carries none. The SDK's message, which quotes
// the store's error document, is dropped.
func s3Error(op, name string, err error) *sinkError {
	var withStatus interface{ HTTPStatusCode() int }
	if errors.As(err, &withStatus) && withStatus.HTTPStatusCode() != 0 {
		return statusError(op, name, withStatus.HTTPStatusCode())
	}
	return transportError(op, name, err)
}
