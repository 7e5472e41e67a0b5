package jwtrotor

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

// pathMetrics serves the mount's metrics (metrics.go) to a token holder.
func pathMetrics(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "metrics",
		},
		Fields: map[string]*framework.FieldSchema{
			"format": {
				Type:        framework.TypeString,
				Description: "prometheus for the Prometheus text exposition format; JSON otherwise.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: op(b.pathMetricsRead, "read", "metrics", "Read the mount's metrics, as JSON or in the Prometheus text format.", metricsAnswer(b.metrics.names)),
		},
		HelpSynopsis:    "Metrics of this mount's keys, signing, JWKS and verifiers.",
		HelpDescription: "format=prometheus returns the Prometheus text exposition format as a raw body, for a scraper with a Vault token; otherwise the same figures as JSON.",
	}
}

// metricsAnswer declares the JSON answer: one list of series per family
// (a family with no series is left out). format=prometheus answers a raw
// body instead.
func metricsAnswer(names []string) map[string]*framework.FieldSchema {
	out := map[string]*framework.FieldSchema{}
	for _, n := range names {
		out[n] = &framework.FieldSchema{Type: framework.TypeSlice, Description: "Series of " + n + ": labels and value."}
	}
	return out
}

func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if _, err := b.load(ctx, req.Storage); err != nil {
		return nil, err
	}
	families, err := b.metrics.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	if d.Get("format").(string) == "prometheus" {
		var buf bytes.Buffer
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		enc := expfmt.NewEncoder(&buf, format)
		for _, f := range families {
			if err := enc.Encode(f); err != nil {
				return nil, fmt.Errorf("encode metrics: %w", err)
			}
		}
		return &logical.Response{Data: map[string]any{
			logical.HTTPStatusCode:  http.StatusOK,
			logical.HTTPContentType: string(format),
			logical.HTTPRawBody:     buf.Bytes(),
		}}, nil
	}
	out := map[string]any{}
	for _, f := range families {
		var series []map[string]any
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			series = append(series, map[string]any{"labels": labels, "value": metricValue(m)})
		}
		out[f.GetName()] = series
	}
	return &logical.Response{Data: out}, nil
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}
