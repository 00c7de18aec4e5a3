// Package hatest holds the cluster's HA tests in a multi-host lab (package
// lab/labtest): hosts are killed and cut off, and HA VMs must run again
// elsewhere, once. It has no code of its own.
package hatest
