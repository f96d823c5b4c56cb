package labels

import "fmt"

// Task is a classification task: which label a model predicts, how many
// outputs its head has and the names of its classes.
type Task struct {
	Name string // "application" or "traffic"; "" for an unknown task
	// OutputDim is the reference models' head size (17 and 12: its older
	// label sets were larger, and its checkpoints keep those heads).
	OutputDim int
	// Classes is the number of label ids in use (15 and 11).
	Classes   int
	className func(int) string
}

// The reference's two tasks.
var (
	Application = Task{Name: "application", OutputDim: AppOutputDim, Classes: NumApps, className: AppName}
	Traffic     = Task{Name: "traffic", OutputDim: TrafficOutputDim, Classes: NumTraffic, className: TrafficName}
)

// ParseTask reads "application" (or "app") and "traffic".
func ParseTask(s string) (Task, error) {
	switch s {
	case "application", "app":
		return Application, nil
	case "traffic":
		return Traffic, nil
	}
	return Task{}, fmt.Errorf("task %q: want application or traffic", s)
}

// TaskForOutputDim is the reference task whose head has n outputs, or an
// unnamed task of n classes.
func TaskForOutputDim(n int) Task {
	switch n {
	case Application.OutputDim:
		return Application
	case Traffic.OutputDim:
		return Traffic
	}
	return Task{OutputDim: n, Classes: n}
}

// ClassName is the name of label id, or "class <id>" for a task without
// names.
func (t Task) ClassName(id int) string {
	if t.className == nil {
		return fmt.Sprintf("class %d", id)
	}
	return t.className(id)
}
