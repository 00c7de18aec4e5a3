// Package hatest holds the cluster's tests in a multi-host lab (package
// lab/labtest): hosts are killed, cut off and put in maintenance, and VMs
// must run again elsewhere, once, or move live. It has no code of its own.
package hatest
