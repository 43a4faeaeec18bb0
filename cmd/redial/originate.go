package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type kvFlag map[string]string

func (k kvFlag) String() string { return "" }
func (k kvFlag) Set(s string) error {
	key, v, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	k[key] = v
	return nil
}

func originate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("originate", flag.ContinueOnError)
	api := fs.String("api", envOr("REDIAL_API", "http://127.0.0.1:8088"), "node API base URL [env REDIAL_API]")
	token := addTokenFlag(fs)
	number := fs.String("number", "", "number to call; comma separated numbers are tried in order")
	groups := fs.String("line-group", "", "line groups, comma separated, tried in order")
	ext := fs.String("extension", "", "destination extension")
	dpContext := fs.String("context", "default", "destination context")
	dp := fs.String("dialplan", "XML", "destination dialplan")
	callRef := fs.String("call-ref", "", "call reference (generated when empty)")
	contactRef := fs.String("contact-ref", "", "contact reference")
	campaignRef := fs.String("campaign-ref", "", "campaign reference")
	wait := fs.Bool("wait", false, "wait for the call to end and print its CDRs")
	vars := kvFlag{}
	fs.Var(vars, "var", "channel variable name=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := map[string]any{
		"number": splitList(*number), "line_group": splitList(*groups),
		"destination": map[string]string{"extension": *ext, "context": *dpContext, "dialplan": *dp},
		"variables":   map[string]string(vars),
	}
	for k, v := range map[string]string{"call_ref": *callRef, "contact_ref": *contactRef, "campaign_ref": *campaignRef} {
		if v != "" {
			body[k] = v
		}
	}
	ref, err := postCall(ctx, "originate", strings.TrimRight(*api, "/")+"/api/v1/calls", *token, body)
	if err != nil {
		return err
	}
	fmt.Println(ref)
	if !*wait {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		resp, err := apiDo(ctx, http.MethodGet, strings.TrimRight(*api, "/")+"/api/v1/calls/"+ref, *token, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return fmt.Errorf("originate: GET call %s: %s: %s", ref, resp.Status, strings.TrimSpace(string(b)))
		}
		var info struct {
			State string            `json:"state"`
			CDRs  []json.RawMessage `json:"cdrs"`
		}
		json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if info.State == "ended" {
			for _, c := range info.CDRs {
				os.Stdout.Write(append(c, '\n'))
			}
			return nil
		}
	}
}

// addTokenFlag is --token, the API token commands that call a node's
// HTTP API send as a Bearer header.
func addTokenFlag(fs *flag.FlagSet) *string {
	return fs.String("token", os.Getenv("REDIAL_TOKEN"), "API token (redial token create) [env REDIAL_TOKEN]; none needed only while the node is in open mode")
}

// apiDo sends one request to a node's API, with the token as a Bearer
// header and a JSON body when body is not nil.
// postCall POSTs a call request (originate, click-to-dial) and returns the
// call_ref of its 202.
func postCall(ctx context.Context, what, url, token string, body map[string]any) (string, error) {
	b, _ := json.Marshal(body)
	resp, err := apiDo(ctx, http.MethodPost, url, token, b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("%s: %s: %s", what, resp.Status, strings.TrimSpace(string(out)))
	}
	var accepted struct {
		CallRef string `json:"call_ref"`
	}
	if err := json.Unmarshal(out, &accepted); err != nil {
		return "", fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	return accepted.CallRef, nil
}

func apiDo(ctx context.Context, method, url, token string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return http.DefaultClient.Do(req)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
