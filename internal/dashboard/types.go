package dashboard

import (
	"time"

	"redial/internal/acd"
	"redial/internal/dialer"
)

// The JSON of the page's event stream (docs/dashboard.md) and of the
// nodes' reports on the cluster bus.

// nodeReport is what one node publishes on topicNode while someone views
// the dashboard anywhere: its own figures, and what happened since its
// last report.
type nodeReport struct {
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Time        time.Time `json:"time"`
	ActiveCalls int       `json:"active_calls"`
	CPUPct      float64   `json:"cpu_pct"`
	RSSBytes    int64     `json:"rss_bytes"`
	Goroutines  int       `json:"goroutines"`
	// Light reports (three of every four) carry only what changes fast:
	// calls, chart points and CDRs; the rest stays as the last full report
	// said.
	Light bool `json:"light,omitempty"`
	// Tasks are this node's dialer runners.
	Tasks []dialer.TaskStatus `json:"tasks"`
	// Calls are the newest maxCalls calls in progress; CallsTotal counts
	// all of them.
	Calls      []callRow       `json:"calls"`
	CallsTotal int             `json:"calls_total"`
	IVR        []ivrRow        `json:"ivr"`
	Lines      map[string]line `json:"lines"`
	// CPS holds this node's calls started per second for the last few
	// seconds; Disp its CDRs per minute and disposition for the current
	// and the previous minute. Both replace earlier points of the same
	// time.
	CPS  []cpsPoint  `json:"cps"`
	Disp []dispPoint `json:"disp"`
	// CampDisp counts the last hour's CDRs per campaign and disposition.
	CampDisp map[string]map[string]int `json:"camp_disp"`
	// CDRs are the CDRs written since the last report (the newest
	// maxCDRsPerReport of them), oldest first.
	CDRs []cdrRow `json:"cdrs"`
}

// line is one line's figures on one node.
type line struct {
	// CPS is the channels granted per second over the last seconds.
	CPS float64 `json:"cps"`
	// Failovers counts attempts on the line that failed over to the next
	// line, since the node started.
	Failovers int64 `json:"failovers"`
}

type cpsPoint [2]int64 // unix second, calls started

type dispPoint struct {
	Minute int64          `json:"m"` // unix second of the minute's start
	Counts map[string]int `json:"c"`
}

// history is a node's answer to methodHistory: the last hour.
type history struct {
	CPS  []cpsPoint  `json:"cps"`
	Disp []dispPoint `json:"disp"`
}

type callRow struct {
	CallRef     string     `json:"call_ref"`
	Node        string     `json:"node"`
	State       string     `json:"state"`
	CampaignRef string     `json:"campaign_ref"`
	ContactRef  string     `json:"contact_ref"`
	Number      string     `json:"number"`
	Line        string     `json:"line"`
	Attempt     int        `json:"attempt"`
	Start       time.Time  `json:"start"`
	Answer      *time.Time `json:"answer,omitempty"`
}

// ivrRow is one IVR session: its script and component, and, under an
// application's control (ivrapi), who controls it.
type ivrRow struct {
	Node      string    `json:"node"`
	IVRID     string    `json:"ivrid"`
	CallRef   string    `json:"call_ref"`
	Script    string    `json:"script"`
	Component string    `json:"component"`
	Started   time.Time `json:"started"`
	Key       string    `json:"key"`
	Owner     string    `json:"owner"`
	Grace     bool      `json:"grace"`
}

type cdrRow struct {
	CDRID       string    `json:"cdr_id"`
	Time        time.Time `json:"time"`
	Node        string    `json:"node"`
	CallRef     string    `json:"call_ref"`
	CampaignRef string    `json:"campaign_ref"`
	ContactRef  string    `json:"contact_ref"`
	Number      string    `json:"client_number"`
	Line        string    `json:"line"`
	Attempt     int       `json:"attempt"`
	Disposition string    `json:"disposition"`
	SIPCode     int       `json:"sip_code"`
	HangupCause string    `json:"hangup_cause"`
	Duration    int       `json:"duration"`
	Billsec     int       `json:"billsec"`
	Ext         *string   `json:"ext"`
}

// state is the page's `state` event.
type state struct {
	Time          time.Time         `json:"time"`
	Self          string            `json:"self"`
	Nodes         []nodeRow         `json:"nodes"`
	Campaigns     []campaignRow     `json:"campaigns"`
	Lines         []lineRow         `json:"lines"`
	Queues        []acd.QueueStatus `json:"queues"`
	QueuesInvalid map[string]string `json:"queues_invalid"`
	Calls         []callRow         `json:"calls"`
	CallsTotal    int               `json:"calls_total"`
	IVR           []ivrRow          `json:"ivr_sessions"`
}

type nodeRow struct {
	Host     string    `json:"host"`
	Alive    bool      `json:"alive"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	// Reporting is true while the node's reports arrive; the figures
	// below are zero otherwise.
	Reporting   bool    `json:"reporting"`
	ActiveCalls int     `json:"active_calls"`
	CPUPct      float64 `json:"cpu_pct"`
	RSSBytes    int64   `json:"rss_bytes"`
	Goroutines  int     `json:"goroutines"`
}

// campaignRow is one task over every node that runs it: the dialer's
// status summed, with what the page adds.
type campaignRow struct {
	dialer.TaskStatus
	AnswerRate   *float64       `json:"answer_rate"`
	Dispositions map[string]int `json:"dispositions"`
	// Nodes is how many nodes run the task.
	Nodes int `json:"nodes"`
}

type lineRow struct {
	Name      string  `json:"name"`
	Group     string  `json:"group"`
	Enable    bool    `json:"enable"`
	Limit     int     `json:"limit"`
	CPSLimit  int     `json:"cps_limit"`
	InUse     int     `json:"in_use"`
	CPS       float64 `json:"cps"`
	Failovers int64   `json:"failovers"`
	Error     string  `json:"error,omitempty"`
}

// series is the page's `series` event.
type series struct {
	Reset bool       `json:"reset"`
	CPS   []cpsPoint `json:"cps"`
	Disp  [][2]any   `json:"dispositions"`
}
