FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
EXPOSE 8700
CMD ["kefu", "serve", "--host", "0.0.0.0"]
