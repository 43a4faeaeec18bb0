package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"redial/internal/store"
)

// tokenCmd manages API tokens. Like `redial nodes` it talks to Redis
// directly: tokens are cluster state, and creating the first one must not
// need a token.
func tokenCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("token: want a subcommand: create, list, revoke")
	}
	switch args[0] {
	case "create":
		return tokenCreate(ctx, args[1:], os.Stdout, os.Stderr)
	case "list":
		return tokenList(ctx, args[1:], os.Stdout)
	case "revoke":
		return tokenRevoke(ctx, args[1:], os.Stdout)
	}
	return fmt.Errorf("token: unknown subcommand %q (want create, list, revoke)", args[0])
}

// nameAndFlags parses "NAME [flags]" as well as "[flags] NAME".
func nameAndFlags(fs *flag.FlagSet, args []string, usage string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "" || len(rest) > 0 {
		return "", errors.New("usage: " + usage)
	}
	return name, nil
}

// tokenCreate prints the new token on out (alone on its line, so
// TOKEN=$(redial token create ...) works) and what it grants on note.
func tokenCreate(ctx context.Context, args []string, out, note io.Writer) error {
	const usage = "redial token create NAME --capability rest,ivrapi,files,dashboard [--domain D]"
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	caps := fs.String("capability", "", "capabilities, comma separated: "+strings.Join(store.TokenCapabilities, ", "))
	name, err := nameAndFlags(fs, args, usage)
	if err != nil {
		return err
	}
	if *caps == "" {
		return errors.New("token create: --capability is required (" + strings.Join(store.TokenCapabilities, ", ") + ")")
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	tok, rec, err := st.CreateToken(ctx, name, splitList(*caps), rf.domain)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	fmt.Fprintln(out, tok)
	fmt.Fprintf(note, "token %q created for domain %q with %s; it is shown only now: store it. Use it as: Authorization: Bearer <token>\n",
		rec.Name, rec.Domain, strings.Join(rec.Capabilities, ","))
	return nil
}

// tokenList prints every token without its secret; the digest is shown
// abbreviated, enough to tell two records apart.
func tokenList(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token list", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCAPABILITIES\tDOMAIN\tCREATED\tDIGEST")
	for _, t := range list {
		created := "-"
		if !t.Created.IsZero() {
			created = t.Created.UTC().Format("2006-01-02T15:04:05Z")
		}
		name := t.Name
		if name == "?" {
			name = "? (malformed record)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s…\n", name, strings.Join(t.Capabilities, ","), t.Domain, created, t.Digest[:min(8, len(t.Digest))])
	}
	return w.Flush()
}

func tokenRevoke(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token revoke", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	name, err := nameAndFlags(fs, args, "redial token revoke NAME")
	if err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(ctx, name); err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	fmt.Fprintf(out, "token %q revoked; every node refuses it within a second\n", name)
	return nil
}
