package ivrapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"redial/internal/files"
	"redial/internal/media"
)

// defaultStaticStore is where a static upload without destpath goes (the
// seed: "The standard value is considered to be :SYNC_DOMAIN_DATA").
const defaultStaticStore = ":SYNC_DOMAIN_DATA"

// getPath publishes a signed link to the file at store path p of a session
// whose :TEMP dir is temp.
func (s *Service) getPath(ctx context.Context, temp, p string) (any, *apiError) {
	abs, err := s.deps.Files.Resolve(temp, p)
	if err != nil {
		return nil, pathError("path", err)
	}
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errf(CodeNotFound, "path %q: no such file", p)
	}
	if err != nil || !fi.Mode().IsRegular() {
		return nil, errf(CodeNotFound, "path %q: not a regular file", p)
	}
	url, _, err := s.deps.Links.Publish(ctx, abs)
	if err != nil {
		return nil, errf(CodeInternal, "path %q: %v", p, err)
	}
	return url, nil
}

// uploadTemp fetches url into the session's :TEMP dir.
func (s *Service) uploadTemp(ctx context.Context, temp, url string) (any, *apiError) {
	name, err := s.deps.Fetcher.Fetch(ctx, url, temp, files.FetchOptions{Check: checkAudio})
	if err != nil {
		return nil, fetchError(err)
	}
	return ":TEMP/" + name, nil
}

// uploadStatic fetches url into the store folder destpath on this node.
func (s *Service) uploadStatic(ctx context.Context, url, destpath string) (any, *apiError) {
	if destpath == "" {
		destpath = defaultStaticStore
	}
	if strings.HasPrefix(destpath, ":TEMP") {
		return nil, errf(CodeBadRequest, "destpath %q: a static upload needs a store other than :TEMP (use ivrapi_file_upload_temp)", destpath)
	}
	probe, err := files.Join(destpath, "upload")
	if err != nil {
		return nil, pathError("destpath", err)
	}
	abs, err := s.deps.Files.ResolveForWrite("", probe)
	if err != nil {
		return nil, pathError("destpath", err)
	}
	name, err := s.deps.Fetcher.Fetch(ctx, url, filepath.Dir(abs), files.FetchOptions{Check: checkAudio})
	if err != nil {
		return nil, fetchError(err)
	}
	p, err := files.Join(destpath, name)
	if err != nil {
		return nil, pathError("destpath", err)
	}
	return p, nil
}

// staticReq asks a node to fetch a static upload itself.
type staticReq struct {
	URL      string `json:"url"`
	DestPath string `json:"destpath"`
}

func (s *Service) handleStatic(ctx context.Context, from string, raw []byte) ([]byte, error) {
	var req staticReq
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("ivrapi: static upload from %s: %w", from, err)
	}
	v, ae := s.uploadStatic(ctx, req.URL, req.DestPath)
	rep := homeRep{Error: ae}
	if ae == nil {
		rep.Result, _ = json.Marshal(v)
	}
	return json.Marshal(rep)
}

// uploadStaticEverywhere makes a static upload on every live node: each
// node's stores are its own (under its --data), and a prompt uploaded once
// must play wherever a call lands. Every node fetches the URL itself under
// the same rules; the upload fails if any live node could not.
func (s *Service) uploadStaticEverywhere(ctx context.Context, url, destpath string) (any, *apiError) {
	v, ae := s.uploadStatic(ctx, url, destpath)
	if ae != nil || s.deps.Directory == nil {
		return v, ae
	}
	req, _ := json.Marshal(staticReq{URL: url, DestPath: destpath})
	var mu sync.Mutex
	var failed []string
	var first *apiError
	err := s.otherNodes(ctx, func(host string) {
		out, err := s.deps.Bus.Request(ctx, host, methodStatic, req, fetchTimeout)
		var rep homeRep
		if err == nil {
			err = json.Unmarshal(out, &rep)
		}
		if err == nil && rep.Error != nil {
			err = rep.Error
		}
		if err != nil {
			mu.Lock()
			failed = append(failed, host+": "+err.Error())
			if first == nil {
				first = asAPIError(err)
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, errf(CodeInternal, "static upload stored on %s only: listing the other nodes: %v", s.cfg.Host, err)
	}
	if first != nil {
		sort.Strings(failed)
		return nil, &apiError{Code: first.Code, Message: fmt.Sprintf("static upload failed on %d node(s): %s", len(failed), strings.Join(failed, "; "))}
	}
	return v, nil
}

// errNotAudio marks a fetched file that is neither WAV nor MP3.
var errNotAudio = errors.New("not a WAV or MP3 file")

// checkAudio refuses a download that does not open as WAV or MP3: every
// file the API brings in is for playback.
func checkAudio(path string) error {
	src, err := media.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotAudio, err)
	}
	src.Close()
	return nil
}

// fetchError maps a fetch failure to its code.
func fetchError(err error) *apiError {
	msg := err.Error()
	switch {
	case errors.Is(err, errNotAudio):
		return &apiError{Code: CodeUnsupportedMedia, Message: msg}
	case errors.Is(err, files.ErrForbiddenURL):
		return &apiError{Code: CodeForbiddenURL, Message: msg}
	case errors.Is(err, files.ErrTooLarge):
		return &apiError{Code: CodeTooLarge, Message: msg}
	case errors.Is(err, files.ErrFetchFailed):
		return &apiError{Code: CodeFetchFailed, Message: msg}
	case errors.Is(err, files.ErrUnsafePath), errors.Is(err, files.ErrUnknownStore):
		return &apiError{Code: CodeBadRequest, Message: msg}
	}
	return &apiError{Code: CodeInternal, Message: msg}
}

// pathError maps a store path refusal to bad_request naming the field.
func pathError(field string, err error) *apiError {
	if errors.Is(err, files.ErrUnsafePath) || errors.Is(err, files.ErrUnknownStore) || errors.Is(err, files.ErrNoSession) {
		return errf(CodeBadRequest, "%s: %v", field, err)
	}
	return errf(CodeInternal, "%s: %v", field, err)
}
