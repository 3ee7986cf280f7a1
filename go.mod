module github.com/incuslb/incuslb

go 1.26.8

require sigs.k8s.io/yaml v1.4.0

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/kr/pretty v0.1.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	gopkg.in/check.v1 v1.0.0-20180628173108-788fd7840127 // indirect
)
