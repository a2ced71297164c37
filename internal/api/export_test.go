package api

import "context"

// CallForTest posts an empty request to /v1/<method>, for tests of unknown methods.
func (c *Client) CallForTest(ctx context.Context, method string) error {
	return c.call(ctx, method, nil, nil)
}
