package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// click2dial asks a node to ring an agent and, once they answer, dial a
// customer and bridge them (POST /api/v1/click2dial); it prints the
// call_ref.
func click2dial(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("click2dial", flag.ContinueOnError)
	api := fs.String("api", envOr("REDIAL_API", "http://127.0.0.1:8088"), "node API base URL [env REDIAL_API]")
	token := addTokenFlag(fs)
	ext := fs.String("ext", "", "agent extension, rung first")
	number := fs.String("number", "", "customer number; comma separated numbers are tried in order")
	groups := fs.String("line-group", "", "line groups, comma separated, tried in order")
	callRef := fs.String("call-ref", "", "call reference (generated when empty)")
	contactRef := fs.String("contact-ref", "", "contact reference")
	campaignRef := fs.String("campaign-ref", "", "campaign reference (click2dial when empty)")
	vars := kvFlag{}
	fs.Var(vars, "var", "channel variable name=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("click2dial: unexpected argument %q", fs.Arg(0))
	}
	body := map[string]any{"ext": *ext, "number": splitList(*number), "variables": map[string]string(vars)}
	if g := splitList(*groups); len(g) > 0 {
		body["line_group"] = g
	}
	for k, v := range map[string]string{"call_ref": *callRef, "contact_ref": *contactRef, "campaign_ref": *campaignRef} {
		if v != "" {
			body[k] = v
		}
	}
	ref, err := postCall(ctx, "click2dial", strings.TrimRight(*api, "/")+"/api/v1/click2dial", *token, body)
	if err != nil {
		return err
	}
	fmt.Println(ref)
	return nil
}
