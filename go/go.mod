module github.com/vnet-dev/vnet/go

go 1.19
