package ivrapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// wireSeedFrames are the request examples of seed 002, written as the seed
// writes them (whitespace included), plus the requests the seed describes
// without a literal example.
var wireSeedFrames = map[string]string{
	"accept": `[
  "ivrapi_accept",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll"
  }
]`,
	"reaccept": `[
  "ivrapi_reaccept",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll"
  }
]`,
	"abort": `[
  "ivrapi_abort",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll"
  }
]`,
	"apply_204": `[
  "ivrapi_component_apply",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "data": {
      "oType": 204,
      "mode": 0,
      "file": ":GS_PUB/x/y/14.mp3"
    }
  }
]`,
	"apply_208": `[
  "ivrapi_component_apply",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "data": {
      "oType": 208,
      "recTimeSec": "10",
      "maxSymbolCount": "3",
      "interruptSymbols": "4, 5, 6",
      "abortOnSilence": 0
    }
  }
]`,
	"terminate": `[
  "ivrapi_component_terminate",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll"
  }
]`,
	"get_path": `[
  "ivrapi_file_get_path",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "path": ":TEMP/ivr_records/ivr_000006_1602234901218.wav"
  }
]`,
	"upload_temp": `[
  "ivrapi_file_upload_temp",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "url": "http://192.168.0.112/14.mp3"
  }
]`,
	"upload_temp_destpath": `[
  "ivrapi_file_upload_temp",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "url": "http://192.168.0.112/14.mp3",
    "destpath": ":GS_PUB/x/y/"
  }
]`,
	"upload_static": `[
  "ivrapi_file_upload_static",
  {
    "qid": 0.1234,
    "key": "abc",
    "ivrid": "rDlg-006-Sm41ll",
    "url": "http://192.168.0.112/14.mp3",
    "destpath": ":GS_PUB/x/y/"
  }
]`,
	"file_upload_static": `[ "file_upload_static", { "qid": 123, "url": "http://192.168.0.12/abc.wav", "destpath":":GS_PUB/a/b/c" } ]`,
	"subscribe":          `["subscribe", {"qid": 1, "class": "ivrevents"}]`,
	"subscribe_key":      `["subscribe", {"qid": "s1", "class": "ivrevents", "key": "abc"}]`,
	"unsubscribe":        `["unsubscribe", {"qid": 2, "class": "ivrevents"}]`,
}

// wireCompact is data in compact form, so an object can be compared
// regardless of the whitespace the client wrote.
func wireCompact(t *testing.T, data []byte) string {
	t.Helper()
	if len(data) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatalf("data %q is not JSON: %v", data, err)
	}
	return b.String()
}

func TestParseFrameSeedExamples(t *testing.T) {
	session := func(name string) request {
		return request{Name: name, QID: json.RawMessage("0.1234"), Key: "abc", IVRID: "rDlg-006-Sm41ll", Since: -1}
	}
	want := map[string]request{
		"accept":    session(reqAccept),
		"reaccept":  session(reqReaccept),
		"abort":     session(reqAbort),
		"terminate": session(reqTerminate),
	}
	r := session(reqApply)
	r.Data = json.RawMessage(`{"oType":204,"mode":0,"file":":GS_PUB/x/y/14.mp3"}`)
	want["apply_204"] = r
	r = session(reqApply)
	r.Data = json.RawMessage(`{"oType":208,"recTimeSec":"10","maxSymbolCount":"3","interruptSymbols":"4, 5, 6","abortOnSilence":0}`)
	want["apply_208"] = r
	r = session(reqGetPath)
	r.Path = ":TEMP/ivr_records/ivr_000006_1602234901218.wav"
	want["get_path"] = r
	r = session(reqUploadTemp)
	r.URL = "http://192.168.0.112/14.mp3"
	want["upload_temp"] = r
	r.DestPath = ":GS_PUB/x/y/"
	want["upload_temp_destpath"] = r
	r.Name = reqUploadStatic
	want["upload_static"] = r
	want["file_upload_static"] = request{Name: reqFileUploadStatic, QID: json.RawMessage("123"),
		URL: "http://192.168.0.12/abc.wav", DestPath: ":GS_PUB/a/b/c", Since: -1}
	want["subscribe"] = request{Name: reqSubscribe, QID: json.RawMessage("1"), Class: classIVREvents, Since: -1}
	want["subscribe_key"] = request{Name: reqSubscribe, QID: json.RawMessage(`"s1"`), Class: classIVREvents, Key: "abc", Since: -1}
	want["unsubscribe"] = request{Name: reqUnsubscribe, QID: json.RawMessage("2"), Class: classIVREvents, Since: -1}

	for name, frame := range wireSeedFrames {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for seed frame %q", name)
			}
			got, err := parseFrame([]byte(frame))
			if err != nil {
				t.Fatalf("parseFrame: %v", err)
			}
			if string(got.QID) != string(w.QID) {
				t.Errorf("QID = %s, want %s", got.QID, w.QID)
			}
			if g, wd := wireCompact(t, got.Data), wireCompact(t, w.Data); g != wd {
				t.Errorf("Data = %s, want %s", g, wd)
			}
			got.QID, got.Data, w.QID, w.Data = nil, nil, nil, nil
			if !reflect.DeepEqual(*got, w) {
				t.Errorf("request = %+v\nwant      %+v", *got, w)
			}
		})
	}
}

func TestParseFrameReacceptSince(t *testing.T) {
	for _, tc := range []struct {
		since string
		want  int64
	}{
		{"", -1},
		{`, "since": null`, -1},
		{`, "since": 0`, 0},
		{`, "since": 42`, 42},
		{`, "since": 9007199254740993`, 9007199254740993},
	} {
		frame := `["ivrapi_reaccept", {"qid": 1, "key": "abc", "ivrid": "rDlg-1"` + tc.since + `}]`
		r, err := parseFrame([]byte(frame))
		if err != nil {
			t.Errorf("%s: %v", frame, err)
			continue
		}
		if r.Since != tc.want {
			t.Errorf("%s: Since = %d, want %d", frame, r.Since, tc.want)
		}
	}
}

// TestParseFrameQIDEcho checks that the qid reaches the reply exactly as
// the client wrote it: clients match replies to requests by it, and a
// number such as 0.1234 or 1e3 must not come back reformatted.
func TestParseFrameQIDEcho(t *testing.T) {
	for _, qid := range []string{"0.1234", "123", `"abc"`, "-1", "1e3", "0", `""`, `"` + strings.Repeat("q", maxQID-2) + `"`} {
		frame := `["ivrapi_accept",{"qid": ` + qid + ` ,"key":"abc","ivrid":"rDlg-006-Sm41ll"}]`
		r, err := parseFrame([]byte(frame))
		if err != nil {
			t.Errorf("qid %s: %v", qid, err)
			continue
		}
		if string(r.QID) != qid {
			t.Errorf("qid %s: QID = %s", qid, r.QID)
		}
		wantOK := `["ivrapi_accept_result",{"qid":` + qid + `,"result":{"state":"ok"}}]`
		if got := string(encodeResult(r.Name, r.QID, map[string]string{"state": "ok"})); got != wantOK {
			t.Errorf("qid %s: result reply\n got %s\nwant %s", qid, got, wantOK)
		}
		wantErr := `["ivrapi_accept_result",{"qid":` + qid + `,"error":{"code":"owned","message":"taken"}}]`
		if got := string(encodeError(r.Name, r.QID, errf(CodeOwned, "taken"))); got != wantErr {
			t.Errorf("qid %s: error reply\n got %s\nwant %s", qid, got, wantErr)
		}
	}
}

// wireReplyOf is the reply conn.handle sends for a frame parseFrame
// rejected: under the request's name and qid when they could be read.
func wireReplyOf(r *request, err error) []byte {
	name, qid := "", json.RawMessage(nil)
	if r != nil {
		name, qid = r.Name, r.QID
	}
	return encodeError(name, qid, asAPIError(err))
}

// wireDecodeReply splits a reply into its name and body, failing the test
// unless it is a JSON array [string, object] in valid UTF-8.
func wireDecodeReply(t *testing.T, reply []byte) (string, map[string]json.RawMessage) {
	t.Helper()
	if !utf8.Valid(reply) || !json.Valid(reply) {
		t.Fatalf("reply %q is not valid UTF-8 JSON (a WebSocket text frame must be)", reply)
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(reply, &parts); err != nil || len(parts) != 2 {
		t.Fatalf("reply %s: want an array of 2 (err %v)", reply, err)
	}
	var name string
	if err := json.Unmarshal(parts[0], &name); err != nil {
		t.Fatalf("reply %s: first element is not a string: %v", reply, err)
	}
	if name != "error" && !strings.HasSuffix(name, "_result") {
		t.Fatalf("reply %s: name %q neither \"error\" nor ending in _result", reply, name)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(parts[1], &body); err != nil || body == nil {
		t.Fatalf("reply %s: second element is not an object (err %v)", reply, err)
	}
	if _, ok := body["qid"]; !ok {
		t.Fatalf("reply %s: no qid", reply)
	}
	return name, body
}

func TestParseFrameHostile(t *testing.T) {
	const (
		// anyName marks a frame whose name may or may not be read (invalid
		// UTF-8 may be refused for the whole frame or for the field).
		anyName = "\x00any"
		noQID   = "null"
	)
	acc := func(body string) string { return `["ivrapi_accept",{"qid":7,` + body + `}]` }
	long := func(n int) string { return strings.Repeat("a", n) }
	bigData := `{"oType":204,"file":"` + long(maxData) + `"}`
	for _, tc := range []struct {
		name  string
		frame string
		// reply is the expected reply name ("error" when no name could be
		// read); qid the expected qid in the reply.
		reply string
		qid   string
		// msg, when set, must appear in the error message, so the client
		// learns which field is wrong.
		msg string
	}{
		{"not JSON", `["ivrapi_accept",{"qid":1`, "error", noQID, ""},
		{"garbage", "\x00\x01hello", "error", noQID, ""},
		{"trailing data", `["ivrapi_accept",{"qid":1,"key":"a","ivrid":"b"}] []`, "error", noQID, ""},
		{"empty frame", "", "error", noQID, ""},
		{"object instead of array", `{"name":"ivrapi_accept","qid":1}`, "error", noQID, ""},
		{"JSON null", `null`, "error", noQID, ""},
		{"string", `"ivrapi_accept"`, "error", noQID, ""},
		{"empty array", `[]`, "error", noQID, ""},
		{"one element", `["ivrapi_accept"]`, "error", noQID, ""},
		{"three elements", `["ivrapi_accept",{"qid":1,"key":"a","ivrid":"b"},{}]`, "error", noQID, ""},
		{"name number", `[5,{"qid":1}]`, "error", noQID, ""},
		{"name null", `[null,{"qid":1}]`, "error", noQID, ""},
		{"name object", `[{"n":"ivrapi_accept"},{"qid":1}]`, "error", noQID, ""},
		{"name empty", `["",{"qid":1}]`, "error", noQID, ""},
		{"name over 64 bytes", `["` + long(maxNameEcho+1) + `",{"qid":1}]`, "error", noQID, ""},
		{"name with newline", `["ivrapi_accept\nx",{"qid":1,"key":"a","ivrid":"b"}]`, "error", noQID, ""},
		{"name with NUL", `["ivrapi_accept\u0000",{"qid":1,"key":"a","ivrid":"b"}]`, "error", noQID, ""},
		{"name with DEL", "[\"ivrapi_accept\x7f\",{\"qid\":1}]", "error", noQID, ""},
		{"unknown name 64 bytes", `["` + long(maxNameEcho) + `",{"qid":1}]`, long(maxNameEcho) + "_result", "1", ""},
		{"unknown name", `["ivrapi_hijack",{"qid":"u1","key":"a","ivrid":"b"}]`, "ivrapi_hijack_result", `"u1"`, "ivrapi_hijack"},
		{"name case differs", `["IVRAPI_ACCEPT",{"qid":1,"key":"a","ivrid":"b"}]`, "IVRAPI_ACCEPT_result", "1", ""},
		{"body array", `["ivrapi_accept",[1,2]]`, "ivrapi_accept_result", noQID, ""},
		{"body string", `["ivrapi_accept","qid"]`, "ivrapi_accept_result", noQID, ""},
		{"body null", `["ivrapi_accept",null]`, "ivrapi_accept_result", noQID, ""},
		{"missing qid", `["ivrapi_accept",{"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid object", `["ivrapi_accept",{"qid":{"a":1},"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid array", `["ivrapi_accept",{"qid":[1],"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid true", `["ivrapi_accept",{"qid":true,"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid false", `["ivrapi_accept",{"qid":false,"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid null", `["ivrapi_accept",{"qid":null,"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid string over 64 bytes", `["ivrapi_accept",{"qid":"` + long(maxQID-1) + `","key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"qid number over 64 bytes", `["ivrapi_accept",{"qid":` + strings.Repeat("1", maxQID+1) + `,"key":"a","ivrid":"b"}]`, "ivrapi_accept_result", noQID, "qid"},
		{"missing key", acc(`"ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"empty key", acc(`"key":"","ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"null key", acc(`"key":null,"ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"missing ivrid", acc(`"key":"abc"`), "ivrapi_accept_result", "7", "ivrid"},
		{"key number", acc(`"key":5,"ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"key object", acc(`"key":{},"ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"ivrid number", acc(`"key":"abc","ivrid":6`), "ivrapi_accept_result", "7", "ivrid"},
		{"key with newline", acc(`"key":"ab\nc","ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"key with CR", acc(`"key":"ab\rc","ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"key with NUL", acc(`"key":"ab\u0000c","ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"ivrid with tab", acc(`"key":"abc","ivrid":"b\tc"`), "ivrapi_accept_result", "7", "ivrid"},
		{"key over 128 bytes", acc(`"key":"` + long(maxKey+1) + `","ivrid":"b"`), "ivrapi_accept_result", "7", "key"},
		{"ivrid over 64 bytes", acc(`"key":"abc","ivrid":"` + long(maxIVRID+1) + `"`), "ivrapi_accept_result", "7", "ivrid"},
		{"key invalid UTF-8", acc("\"key\":\"ab\xffc\",\"ivrid\":\"b\""), anyName, "", ""},
		{"ivrid invalid UTF-8", acc("\"key\":\"abc\",\"ivrid\":\"\xc3\x28\""), anyName, "", ""},
		{"url invalid UTF-8", "[\"file_upload_static\",{\"qid\":1,\"url\":\"http://h/\xfe.wav\"}]", anyName, "", ""},
		{"qid invalid UTF-8", "[\"ivrapi_accept\",{\"qid\":\"\xff\",\"key\":\"abc\",\"ivrid\":\"b\"}]", anyName, "", ""},
		{"data missing", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b"}]`, "ivrapi_component_apply_result", "7", "data"},
		{"data null", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b","data":null}]`, "ivrapi_component_apply_result", "7", "data"},
		{"data string", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b","data":"{\"oType\":204}"}]`, "ivrapi_component_apply_result", "7", "data"},
		{"data array", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b","data":[{"oType":204}]}]`, "ivrapi_component_apply_result", "7", "data"},
		{"data number", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b","data":204}]`, "ivrapi_component_apply_result", "7", "data"},
		{"data over 32 KiB", `["ivrapi_component_apply",{"qid":7,"key":"abc","ivrid":"b","data":` + bigData + `}]`, "ivrapi_component_apply_result", "7", "data"},
		{"since negative", `["ivrapi_reaccept",{"qid":7,"key":"abc","ivrid":"b","since":-1}]`, "ivrapi_reaccept_result", "7", "since"},
		{"since fractional", `["ivrapi_reaccept",{"qid":7,"key":"abc","ivrid":"b","since":1.5}]`, "ivrapi_reaccept_result", "7", "since"},
		{"since string", `["ivrapi_reaccept",{"qid":7,"key":"abc","ivrid":"b","since":"3"}]`, "ivrapi_reaccept_result", "7", "since"},
		{"since object", `["ivrapi_reaccept",{"qid":7,"key":"abc","ivrid":"b","since":{}}]`, "ivrapi_reaccept_result", "7", "since"},
		{"since overflow", `["ivrapi_reaccept",{"qid":7,"key":"abc","ivrid":"b","since":99999999999999999999}]`, "ivrapi_reaccept_result", "7", "since"},
		{"subscribe other class", `["subscribe",{"qid":7,"class":"callevents"}]`, "subscribe_result", "7", "class"},
		{"subscribe missing class", `["subscribe",{"qid":7}]`, "subscribe_result", "7", "class"},
		{"subscribe class number", `["subscribe",{"qid":7,"class":1}]`, "subscribe_result", "7", "class"},
		{"subscribe key number", `["subscribe",{"qid":7,"class":"ivrevents","key":5}]`, "subscribe_result", "7", "key"},
		{"subscribe key with newline", `["subscribe",{"qid":7,"class":"ivrevents","key":"a\nb"}]`, "subscribe_result", "7", "key"},
		{"unsubscribe other class", `["unsubscribe",{"qid":7,"class":"IVREVENTS"}]`, "unsubscribe_result", "7", "class"},
		{"get_path missing path", `["ivrapi_file_get_path",{"qid":7,"key":"abc","ivrid":"b"}]`, "ivrapi_file_get_path_result", "7", "path"},
		{"get_path path over 512 bytes", `["ivrapi_file_get_path",{"qid":7,"key":"abc","ivrid":"b","path":":TEMP/` + long(maxPath) + `"}]`, "ivrapi_file_get_path_result", "7", "path"},
		{"upload_temp missing url", `["ivrapi_file_upload_temp",{"qid":7,"key":"abc","ivrid":"b"}]`, "ivrapi_file_upload_temp_result", "7", "url"},
		{"upload_temp url over 2048 bytes", `["ivrapi_file_upload_temp",{"qid":7,"key":"abc","ivrid":"b","url":"http://h/` + long(maxURL) + `"}]`, "ivrapi_file_upload_temp_result", "7", "url"},
		{"upload_static destpath number", `["ivrapi_file_upload_static",{"qid":7,"key":"abc","ivrid":"b","url":"http://h/a.wav","destpath":5}]`, "ivrapi_file_upload_static_result", "7", "destpath"},
		{"file_upload_static url over 2048 bytes", `["file_upload_static",{"qid":123,"url":"http://h/` + long(maxURL) + `"}]`, "file_upload_static_result", "123", "url"},
		{"file_upload_static missing url", `["file_upload_static",{"qid":123,"destpath":":GS_PUB/a"}]`, "file_upload_static_result", "123", "url"},
		{"file_upload_static url with newline", `["file_upload_static",{"qid":123,"url":"http://h/a\r\nHost: x"}]`, "file_upload_static_result", "123", "url"},
		{"file_upload_static destpath over 512 bytes", `["file_upload_static",{"qid":123,"url":"http://h/a.wav","destpath":":GS_PUB/` + long(maxPath) + `"}]`, "file_upload_static_result", "123", "destpath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseFrame([]byte(tc.frame))
			if err == nil {
				t.Fatalf("parseFrame accepted %q as %+v", logTrim(tc.frame), r)
			}
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *apiError", err, err)
			}
			if ae.Code != CodeBadRequest {
				t.Errorf("code = %q, want %q", ae.Code, CodeBadRequest)
			}
			if tc.msg != "" && !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("message %q does not name %q", ae.Message, tc.msg)
			}
			name, body := wireDecodeReply(t, wireReplyOf(r, err))
			if tc.reply != anyName {
				if name != tc.reply {
					t.Errorf("reply name = %q, want %q", name, tc.reply)
				}
				if got := string(body["qid"]); got != tc.qid {
					t.Errorf("reply qid = %s, want %s", got, tc.qid)
				}
			}
			var e apiError
			if err := json.Unmarshal(body["error"], &e); err != nil || e.Code != CodeBadRequest || e.Message == "" {
				t.Errorf("reply error = %s, want code %q and a message", body["error"], CodeBadRequest)
			}
		})
	}
}

// logTrim keeps failure output readable for the long frames.
func logTrim(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// TestParseFrameLimits checks that values exactly at each limit pass, so
// the limits reject only what is over them.
func TestParseFrameLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	// data of exactly maxData bytes.
	data := `{"oType":204,"file":"` + long(maxData-len(`{"oType":204,"file":""}`)) + `"}`
	if len(data) != maxData {
		t.Fatalf("test data is %d bytes, want %d", len(data), maxData)
	}
	for name, frame := range map[string]string{
		"key 128, ivrid 64": `["ivrapi_accept",{"qid":1,"key":"` + long(maxKey) + `","ivrid":"` + long(maxIVRID) + `"}]`,
		"qid 64":            `["ivrapi_accept",{"qid":"` + long(maxQID-2) + `","key":"a","ivrid":"b"}]`,
		"data 32 KiB":       `["ivrapi_component_apply",{"qid":1,"key":"a","ivrid":"b","data":` + data + `}]`,
		"url 2048":          `["file_upload_static",{"qid":1,"url":"` + long(maxURL) + `"}]`,
		"path 512":          `["ivrapi_file_get_path",{"qid":1,"key":"a","ivrid":"b","path":"` + long(maxPath) + `"}]`,
		"unicode key":       `["ivrapi_accept",{"qid":1,"key":"ключ-鍵","ivrid":"b"}]`,
		"unknown fields":    `["ivrapi_accept",{"qid":1,"key":"a","ivrid":"b","extra":{"x":[1,2]},"data":"ignored"}]`,
		"subscribe key ''":  `["subscribe",{"qid":1,"class":"ivrevents","key":""}]`,
		"unsubscribe key":   `["unsubscribe",{"qid":1,"class":"ivrevents","key":"abc"}]`,
		"empty data object": `["ivrapi_component_apply",{"qid":1,"key":"a","ivrid":"b","data":{}}]`,
	} {
		if r, err := parseFrame([]byte(frame)); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !knownRequests[r.Name] {
			t.Errorf("%s: name %q", name, r.Name)
		}
	}
}

func TestEncodeResult(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qid    json.RawMessage
		result any
		want   string
	}{
		{"file_upload_static", json.RawMessage("123"), ":GS_PUB/a/b/c/abc.wav",
			`["file_upload_static_result",{"qid":123,"result":":GS_PUB/a/b/c/abc.wav"}]`},
		{"ivrapi_file_upload_static", json.RawMessage("0.1234"), ":GS_PUB/a/b/c/abc.wav",
			`["ivrapi_file_upload_static_result",{"qid":0.1234,"result":":GS_PUB/a/b/c/abc.wav"}]`},
		{"ivrapi_component_apply", json.RawMessage(`"abc"`), map[string]int{"oId": 3},
			`["ivrapi_component_apply_result",{"qid":"abc","result":{"oId":3}}]`},
		{"ivrapi_abort", json.RawMessage("1e3"), nil,
			`["ivrapi_abort_result",{"qid":1e3,"result":null}]`},
		{"subscribe", nil, true,
			`["subscribe_result",{"qid":null,"result":true}]`},
		{"", json.RawMessage("-1"), "x",
			`["error",{"qid":-1,"result":"x"}]`},
	} {
		if got := string(encodeResult(tc.name, tc.qid, tc.result)); got != tc.want {
			t.Errorf("encodeResult(%q, %s)\n got %s\nwant %s", tc.name, tc.qid, got, tc.want)
		}
	}
}

func TestEncodeError(t *testing.T) {
	for _, tc := range []struct {
		name string
		qid  json.RawMessage
		err  *apiError
		want string
	}{
		{"ivrapi_accept", json.RawMessage("0.1234"), errf(CodeOwned, "controlled by another connection"),
			`["ivrapi_accept_result",{"qid":0.1234,"error":{"code":"owned","message":"controlled by another connection"}}]`},
		{"ivrapi_component_apply", json.RawMessage(`"q-7"`), errf(CodeBusy, "component %d running", 3),
			`["ivrapi_component_apply_result",{"qid":"q-7","error":{"code":"busy","message":"component 3 running"}}]`},
		{"ivrapi_accept", nil, errf(CodeBadRequest, "ivrapi_accept: qid: required"),
			`["ivrapi_accept_result",{"qid":null,"error":{"code":"bad_request","message":"ivrapi_accept: qid: required"}}]`},
		{"", nil, errf(CodeBadRequest, "frame is not JSON"),
			`["error",{"qid":null,"error":{"code":"bad_request","message":"frame is not JSON"}}]`},
	} {
		if got := string(encodeError(tc.name, tc.qid, tc.err)); got != tc.want {
			t.Errorf("encodeError(%q, %s)\n got %s\nwant %s", tc.name, tc.qid, got, tc.want)
		}
	}
	// A message carrying client bytes stays a valid reply.
	reply := encodeError("x", json.RawMessage("1"), errf(CodeBadRequest, "bad %s", "\"quoted\"\n\xff<>"))
	wireDecodeReply(t, reply)
}

func TestEncodeReplyName(t *testing.T) {
	for name, want := range map[string]string{
		"":                   "error",
		"ivrapi_accept":      "ivrapi_accept_result",
		"file_upload_static": "file_upload_static_result",
		"subscribe":          "subscribe_result",
	} {
		if got := replyName(name); got != want {
			t.Errorf("replyName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEncodeAPIError(t *testing.T) {
	ae := errf(CodeNotFound, "no session")
	if got := asAPIError(ae); got != ae {
		t.Errorf("asAPIError(apiError) = %+v, want it unchanged", got)
	}
	wrapped := asAPIError(errors.Join(errors.New("home"), ae))
	if wrapped != ae {
		t.Errorf("asAPIError(wrapped apiError) = %+v, want %+v", wrapped, ae)
	}
	other := asAPIError(errors.New("redis: connection refused"))
	if other.Code != CodeInternal || !strings.Contains(other.Message, "connection refused") {
		t.Errorf("asAPIError(plain error) = %+v, want code internal with the message", other)
	}
	if long := asAPIError(errors.New(strings.Repeat("x", 5000))); len(long.Message) > 400 {
		t.Errorf("asAPIError keeps a %d-byte message; a client should not get unbounded internals", len(long.Message))
	}
}

// wireCodes are the error codes of DESIGN.md.
var wireCodes = map[string]bool{CodeBadRequest: true, CodeNotFound: true, CodeOwned: true, CodeNotOwner: true,
	CodeBusy: true, CodeInvalidComponent: true, CodeForbiddenURL: true, CodeFetchFailed: true, CodeTooLarge: true,
	CodeUnsupportedMedia: true, CodeInternal: true}

// wireSameQID reports whether the reply's qid is the request's: the same
// bytes for a number, the same string for a string.
func wireSameQID(reply, req json.RawMessage) bool {
	if req == nil {
		return string(reply) == "null"
	}
	if len(req) > 0 && req[0] == '"' {
		var a, b string
		return json.Unmarshal(reply, &a) == nil && json.Unmarshal(req, &b) == nil && a == b
	}
	return bytes.Equal(reply, req)
}

func FuzzParseFrame(f *testing.F) {
	for _, frame := range wireSeedFrames {
		f.Add([]byte(frame))
	}
	for _, frame := range []string{
		``, `[]`, `{}`, `null`, `["ivrapi_accept"]`, `[1,{}]`, `["",{"qid":1}]`,
		`["ivrapi_accept",{"qid":{"x":1},"key":"a","ivrid":"b"}]`,
		`["ivrapi_accept",{"qid":true}]`,
		`["ivrapi_accept",{"qid":"` + strings.Repeat("q", 70) + `"}]`,
		`["ivrapi_accept\n",{"qid":1}]`,
		`["nope",{"qid":-0.5e-3}]`,
		`["ivrapi_accept",{"qid":1,"key":"a\u0000","ivrid":"b"}]`,
		`["ivrapi_reaccept",{"qid":1,"key":"a","ivrid":"b","since":-3}]`,
		`["ivrapi_component_apply",{"qid":1,"key":"a","ivrid":"b","data":"x"}]`,
		`["subscribe",{"qid":"s","class":"x","key":"k"}]`,
		"[\"ivrapi_accept\",{\"qid\":\"\xff\",\"key\":\"a\",\"ivrid\":\"b\"}]",
		"[\"ivrapi_accept\",{\"qid\":\"a<b>&\u2028\",\"key\":\"a\xff\",\"ivrid\":\"b\"}]",
		"[\"\xff\xfe\",{\"qid\":1}]",
	} {
		f.Add([]byte(frame))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := parseFrame(frame)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("parseFrame(%q): error %v (%T) is not an *apiError", frame, err, err)
			}
			if !wireCodes[ae.Code] {
				t.Fatalf("parseFrame(%q): code %q is not one of DESIGN.md's", frame, ae.Code)
			}
			name, qid := "", json.RawMessage(nil)
			if r != nil {
				name, qid = r.Name, r.QID
				if len(name) > maxNameEcho || !printable(name) {
					t.Fatalf("parseFrame(%q): echoes name %q", frame, name)
				}
			}
			wireFuzzReply(t, frame, encodeError(name, qid, ae), name, qid)
			return
		}
		if r == nil {
			t.Fatalf("parseFrame(%q): no request and no error", frame)
		}
		if !knownRequests[r.Name] {
			t.Fatalf("parseFrame(%q): accepted unknown name %q", frame, r.Name)
		}
		if r.QID == nil || len(r.QID) > maxQID || !json.Valid(r.QID) {
			t.Fatalf("parseFrame(%q): QID %q", frame, r.QID)
		}
		dec := json.NewDecoder(bytes.NewReader(r.QID))
		dec.UseNumber()
		var q any
		if err := dec.Decode(&q); err != nil {
			t.Fatalf("parseFrame(%q): QID %q: %v", frame, r.QID, err)
		}
		switch q.(type) {
		case json.Number, string:
		default:
			t.Fatalf("parseFrame(%q): QID %s is a %T, want a number or a string", frame, r.QID, q)
		}
		for field, v := range map[string]string{"class": r.Class, "key": r.Key, "ivrid": r.IVRID, "path": r.Path, "url": r.URL, "destpath": r.DestPath} {
			if !printable(v) {
				t.Fatalf("parseFrame(%q): %s %q has control characters or invalid UTF-8", frame, field, v)
			}
		}
		if sessionRequests[r.Name] && (r.Key == "" || r.IVRID == "") {
			t.Fatalf("parseFrame(%q): %s without key or ivrid", frame, r.Name)
		}
		if r.Name == reqApply && (len(r.Data) == 0 || r.Data[0] != '{' || len(r.Data) > maxData) {
			t.Fatalf("parseFrame(%q): apply data %q", frame, r.Data)
		}
		if r.Since < -1 {
			t.Fatalf("parseFrame(%q): since %d", frame, r.Since)
		}
		wireFuzzReply(t, frame, encodeResult(r.Name, r.QID, map[string]string{"path": r.Path}), r.Name, r.QID)
		wireFuzzReply(t, frame, encodeError(r.Name, r.QID, errf(CodeBusy, "busy")), r.Name, r.QID)
	})
}

// wireFuzzReply checks a reply the client would get for frame: a valid
// UTF-8 JSON array [replyName(name), {"qid": the request's qid, ...}].
func wireFuzzReply(t *testing.T, frame, reply []byte, name string, qid json.RawMessage) {
	t.Helper()
	got, body := wireDecodeReply(t, reply)
	if got != replyName(name) {
		t.Fatalf("frame %q: reply name %q, want %q", frame, got, replyName(name))
	}
	if !wireSameQID(body["qid"], qid) {
		t.Fatalf("frame %q: reply qid %s, request qid %s", frame, body["qid"], qid)
	}
}
