package jwtrotor

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathClock(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "clock$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "clock",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: op(b.pathClockRead, "read", "clock", "Read the schedule time on this node, and whether it is held.", clockAnswer),
			},
			HelpSynopsis:    "The time the key schedule follows on this node, and whether it is held.",
			HelpDescription: pathClockHelpDesc,
		},
		{
			Pattern: "clock/accept$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationVerb:   "accept",
				OperationSuffix: "clock",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				// Not forwarded: a hold belongs to the node whose clock stepped.
				logical.UpdateOperation: op(b.pathClockAccept, "accept", "clock", "Take the wall clock's time after a held forward step.", withField(clockAnswer, "accepted_seconds", &framework.FieldSchema{Type: framework.TypeInt64, Description: "How far the schedule jumped forward.", Required: true})),
			},
			HelpSynopsis:    "Accept the wall clock's time after a forward step held the key schedule.",
			HelpDescription: pathClockHelpDesc,
		},
	}
}

var clockAnswer = map[string]*framework.FieldSchema{
	"wall_time":     {Type: framework.TypeInt64, Description: "This node's wall clock (Unix seconds).", Required: true},
	"schedule_time": {Type: framework.TypeInt64, Description: "The time key states follow on this node (Unix seconds).", Required: true},
	"held_seconds":  {Type: framework.TypeInt64, Description: "How far the schedule is held behind the wall clock (0: not held).", Required: true},
	"held_since":    {Type: framework.TypeInt64, Description: "When the hold began (Unix seconds, 0: not held).", Required: true},
}

// withField returns fields with one more.
func withField(fields map[string]*framework.FieldSchema, name string, f *framework.FieldSchema) map[string]*framework.FieldSchema {
	out := map[string]*framework.FieldSchema{name: f}
	for k, v := range fields {
		out[k] = v
	}
	return out
}

func clockData(r reading, since int64) map[string]any {
	return map[string]any{
		"wall_time":     r.Wall,
		"schedule_time": r.Schedule,
		"held_seconds":  r.HeldSeconds,
		"held_since":    since,
	}
}

func (b *backend) pathClockRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	_, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: clockData(clk, b.clock.heldSinceUnix())}
	if clk.HeldSeconds > 0 {
		resp.AddWarning(fmt.Sprintf("the key schedule is held %ds behind the wall clock: if the wall clock is right, write %sclock/accept; if it is wrong, correct it and the hold ends by itself", clk.HeldSeconds, req.MountPoint))
	}
	return resp, nil
}

func (b *backend) pathClockAccept(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	if _, err := b.load(ctx, req.Storage); err != nil {
		return nil, err
	}
	r, held := b.clock.accept()
	// Keep the accepted time across a restart: the schedule must never go
	// back before a time it signed at (on a node that may write).
	if held > 0 && b.WriteSafeReplicationState() {
		if err := putJSON(ctx, req.Storage, clockPath, &clockEntry{Version: schemaVersion, HighWater: r.Schedule}); err != nil {
			return nil, err
		}
	}
	resp := &logical.Response{Data: clockData(r, 0)}
	resp.Data["accepted_seconds"] = held
	if held == 0 {
		resp.AddWarning("the schedule was not held; nothing changed")
	}
	return resp, nil
}

var pathClockHelpDesc = fmt.Sprintf(`
Key states follow the wall clock to the second. If the wall clock steps
forward by more than %ds without that much real time passing (a bad NTP step,
a clock set by hand, a suspended host), the schedule holds instead of leaping:
it goes on at the pace of real time, behind the wall clock. Signing goes on
with the active key, tokens' iat and exp follow the schedule, and the JWKS
keeps every key a live token needs. The hold ends when the wall clock steps
back, or when an operator writes clock/accept to take the wall clock's time
(pending keys then activate and retiring keys leave as that time says). A
restart of the plugin also takes the wall clock's time, as it cannot tell a
step from an outage.

clock reads the wall time, the schedule time and how far the schedule is
held on this node.
`, int64(jumpTolerance/time.Second))
