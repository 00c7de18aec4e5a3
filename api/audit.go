package api

import "time"

// AuditRecord is one change made through the API (issue 15, "an audit log
// of every change"): who made it, what it was, when, and how it ended.
type AuditRecord struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`              // the token's name ("local": the Unix socket)
	Role   string    `json:"role"`             // the token's role: admin, operator or viewer
	Method string    `json:"method"`           // POST, PUT or DELETE
	Path   string    `json:"path"`             // the request's path
	Target string    `json:"target,omitempty"` // what it changed, as KIND/NAME (vms/web-1)
	Status int       `json:"status"`           // the HTTP status of the answer
	Remote string    `json:"remote,omitempty"` // the client's address (TCP)
}

// AuditList is the body of GET /v1/audit: records oldest first.
type AuditList struct {
	Items []AuditRecord `json:"items"`
	// Skipped counts damaged lines of the log passed over.
	Skipped int `json:"skipped"`
}
