module github.com/govisor/govisor

go 1.26.8
