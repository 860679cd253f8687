// Cameras. The portal has no camera API yet (video lands with a later issue), so the list is empty
// without asking the server: a request to a route that does not exist would only log a 404. When
// `GET /api/v1/cameras` exists, `listCameras` fetches it and the page needs no other change.

export interface Camera {
  id: string
  name: string
  object_id: string | null
  online: boolean
  snapshot_url: string | null
  snapshot_at: string | null
}

export async function listCameras(): Promise<Camera[]> {
  return []
}
