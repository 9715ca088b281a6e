// Files through the API: upload (multipart, field `file`) and download (the bytes need the bearer
// token, so they are fetched and handed to the browser as a blob URL, never as a link with a
// token in it).
import { appApi } from './api.js';

export async function uploadFile(app, file) {
  const form = new FormData();
  form.append('file', file, file.name);
  const { data } = await appApi(app).upload('/_files/upload', form);
  return data;
}

export async function downloadFile(app, id, filename) {
  const response = await appApi(app).raw(`/_files/${id}`);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename || id;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
